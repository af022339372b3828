{{/* Names and labels shared by every template. */}}

{{- define "checkout.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The name of one service's resources; call with (dict "root" $ "name" "order"). */}}
{{- define "checkout.componentName" -}}
{{- printf "%s-%s" (include "checkout.fullname" .root) .name -}}
{{- end -}}

{{- define "checkout.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: checkout
{{- end -}}

{{/* Selector labels of one service; call with (dict "root" $ "name" "order"). */}}
{{- define "checkout.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "checkout.secretName" -}}
{{- default (printf "%s-secrets" (include "checkout.fullname" .)) .Values.existingSecret -}}
{{- end -}}

{{- define "checkout.postgresClusterName" -}}
{{- printf "%s-pg" (include "checkout.fullname" .) -}}
{{- end -}}

{{- define "checkout.rabbitmqClusterName" -}}
{{- printf "%s-rabbitmq" (include "checkout.fullname" .) -}}
{{- end -}}

{{/* The Secret key holding a service's database URL in external mode, e.g. ORDER_DATABASE_URL. */}}
{{- define "checkout.databaseUrlKey" -}}
{{- printf "%s_DATABASE_URL" (upper .) -}}
{{- end -}}

{{/* The URL of the external database `db` for the chart's Secret; call with (dict "root" $ "db" "orders"). */}}
{{- define "checkout.externalDatabaseUrl" -}}
{{- $e := .root.Values.externalDatabase -}}
{{- $url := printf "postgres://%s:%s@%s:%v/%s" (urlquery $e.user) (urlquery $e.password) $e.host $e.port .db -}}
{{- if $e.options }}{{ printf "%s?%s" $url $e.options }}{{ else }}{{ $url }}{{ end -}}
{{- end -}}

{{- define "checkout.externalAmqpUrl" -}}
{{- $e := .Values.externalRabbitmq -}}
{{- printf "amqp://%s:%s@%s:%v/%s" (urlquery $e.user) (urlquery $e.password) $e.host $e.port (urlquery $e.vhost) -}}
{{- end -}}

{{/* Whether the services get a PostgreSQL role each (CloudNativePG only). */}}
{{- define "checkout.perServiceRoles" -}}
{{- if and .Values.postgresql.operator.enabled .Values.postgresql.operator.perServiceRoles }}true{{ end -}}
{{- end -}}

{{/* Whether the services get a RabbitMQ user each (RabbitMQ cluster operator + messaging topology operator). */}}
{{- define "checkout.perServiceUsers" -}}
{{- if and .Values.rabbitmq.operator.enabled .Values.rabbitmq.perServiceUsers }}true{{ end -}}
{{- end -}}

{{/* The Secret (kubernetes.io/basic-auth) with one service's PostgreSQL role; call with (dict "root" $ "name" "order"). */}}
{{- define "checkout.pgRoleSecretName" -}}
{{- printf "%s-pg-%s" (include "checkout.fullname" .root) .name -}}
{{- end -}}

{{/* The Secret with one service's RabbitMQ user; call with (dict "root" $ "name" "order"). */}}
{{- define "checkout.amqpUserSecretName" -}}
{{- printf "%s-amqp-%s" (include "checkout.fullname" .root) .name -}}
{{- end -}}

{{/*
What each service does on the broker (shared-contracts/src/queues.rs; each service's startup.rs passes the queues
it declares to platform::amqp::Broker::new, and declare_topology also declares checkout.dlx and
checkout.dead-letters), turned into RabbitMQ permissions by RabbitMQ's rules
(https://www.rabbitmq.com/docs/access-control#permissions):
- configure: exchange.declare of checkout.dlx, queue.declare of checkout.dead-letters and of the service's queues;
- write: basic.publish checks the exchange only, and the default exchange "" is checked as amq.default (a publish
  through it cannot be limited per queue); queue.declare with x-dead-letter-exchange needs write on checkout.dlx;
  queue.bind of checkout.dead-letters needs write on that queue;
- read: basic.consume / basic.get of the queues the service takes messages from; queue.declare with
  x-dead-letter-exchange that creates the queue needs read on it (any declaring service may be the first);
  queue.bind needs read on the source exchange checkout.dlx.
scripts/check_deploy.py holds the same table (derived from the code) and checks the rendered regexes against it.
*/}}
{{- define "checkout.amqpPermissions" -}}
order:
  configure: '^(checkout\.dlx|checkout\.dead-letters|checkout\.order\.outcomes|checkout\.coordinator)$'
  write: '^(amq\.default|checkout\.dlx|checkout\.dead-letters)$'
  read: '^(checkout\.order\.outcomes|checkout\.coordinator|checkout\.dlx)$'
payment:
  configure: '^(checkout\.dlx|checkout\.dead-letters|checkout\.payment\.commands|checkout\.coordinator)$'
  write: '^(amq\.default|checkout\.dlx|checkout\.dead-letters)$'
  read: '^(checkout\.payment\.commands|checkout\.coordinator|checkout\.dlx)$'
stock:
  configure: '^(checkout\.dlx|checkout\.dead-letters|checkout\.stock\.commands|checkout\.coordinator)$'
  write: '^(amq\.default|checkout\.dlx|checkout\.dead-letters)$'
  read: '^(checkout\.stock\.commands|checkout\.coordinator|checkout\.dlx)$'
coordinator:
  configure: '^(checkout\.dlx|checkout\.dead-letters|checkout\.coordinator|checkout\.stock\.commands|checkout\.payment\.commands|checkout\.order\.outcomes)$'
  write: '^(amq\.default|checkout\.dlx|checkout\.dead-letters)$'
  read: '^(checkout\.coordinator|checkout\.stock\.commands|checkout\.payment\.commands|checkout\.order\.outcomes|checkout\.dead-letters|checkout\.dlx)$'
{{- end -}}

{{/*
How long Kubernetes waits, from telling a pod to stop, before it kills it: the preStop sleep, then the whole
SHUTDOWN_TIMEOUT_MS (rounded up to seconds), then a margin for the process's exit.
*/}}
{{- define "checkout.terminationGracePeriodSeconds" -}}
{{- $s := .Values.shutdown -}}
{{- add (int $s.preStopSeconds) (div (add (int $s.timeoutMs) 999) 1000) (int $s.graceMarginSeconds) -}}
{{- end -}}

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

# One checkout through the services (POSIX sh and curl only; run by templates/tests/checkout-test.yaml, and by
# scripts/check_deploy.py against a stand-in of the services). ORDER_URL, PAYMENT_URL, STOCK_URL: the Services.
set -eu
fail() {
    echo "FAIL: $*" >&2
    exit 1
}
# call METHOD URL: prints the body of a 200 answer; fails on any other status.
call() {
    out=$(curl -sS -X "$1" --max-time 40 -w '\n%{http_code}' "$2") || fail "$1 $2: no answer"
    status=$(printf '%s\n' "$out" | tail -n 1)
    body=$(printf '%s\n' "$out" | sed '$d')
    [ "$status" = 200 ] || fail "$1 $2 answered $status: $body"
    echo "$1 $2 -> $body" >&2
    printf '%s' "$body"
}
# field JSON NAME: the value of a top-level string, number or boolean field.
field() {
    printf '%s' "$1" | sed -n "s/.*\"$2\" *: *\"\{0,1\}\([^\",}]*\).*/\1/p"
}
for base in "$ORDER_URL" "$PAYMENT_URL" "$STOCK_URL"; do
    tries=0
    until curl -fsS -o /dev/null --max-time 5 "$base/health"; do
        tries=$((tries + 1))
        [ "$tries" -lt 60 ] || fail "$base/health does not answer"
        sleep 2
    done
done

user=$(field "$(call POST "$PAYMENT_URL/payment/create_user")" user_id)
[ -n "$user" ] || fail "create_user returned no user_id"
call POST "$PAYMENT_URL/payment/add_funds/$user/100" >/dev/null
item=$(field "$(call POST "$STOCK_URL/stock/item/create/7")" item_id)
[ -n "$item" ] || fail "item/create returned no item_id"
call POST "$STOCK_URL/stock/add/$item/10" >/dev/null
order=$(field "$(call POST "$ORDER_URL/orders/create/$user")" order_id)
[ -n "$order" ] || fail "orders/create returned no order_id"
call POST "$ORDER_URL/orders/addItem/$order/$item/2" >/dev/null
paid=$(field "$(call POST "$ORDER_URL/orders/checkout/$order")" paid)
[ "$paid" = true ] || fail "checkout of order $order answered paid=$paid"

[ "$(field "$(call GET "$ORDER_URL/orders/find/$order")" paid)" = true ] || fail "order $order is not paid"
stock=$(field "$(call GET "$STOCK_URL/stock/find/$item")" stock)
[ "$stock" = 8 ] || fail "item $item has stock $stock, expected 8"
credit=$(field "$(call GET "$PAYMENT_URL/payment/find_user/$user")" credit)
[ "$credit" = 86 ] || fail "user $user has credit $credit, expected 86"
echo "checkout test passed: order $order paid, stock 10 -> 8, credit 100 -> 86"

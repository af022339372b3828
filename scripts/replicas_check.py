#!/usr/bin/env python3
"""The course's consistency test, run over HTTP against several replicas of each service.

Used by scripts/replicas-check.sh, which starts the replicas. Only the standard library is used, so it runs on any
machine with python3.

The scenario: one item with stock 100 and price 1, 1000 users with credit 1, one order per user holding that item
once, then 1000 concurrent checkouts spread round-robin over the order-svc replicas. Afterwards exactly 100 checkouts
have succeeded, the stock is 0, the credits add up to 900, every order answered 2xx is paid and every order answered
4xx is not. The numbers are printed; the exit status is 0 only when every check holds.

With --kill PID, the process PID (say one order-svc replica behind the gateway) is sent SIGKILL once --kill-after
checkouts have been answered, in the middle of the burst; the checks are the same, so "no answer other than 2xx
or 4xx" then says whether the survivors (and the gateway's retries) hid the death from every client.

Usage: replicas_check.py --order URL[,URL...] --stock URL[,URL...] --payment URL[,URL...]
                         [--kill PID [--kill-after N]]
"""

import argparse
import concurrent.futures
import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request

STOCK = 100
USERS = 1000
TIMEOUT_SECONDS = 60
# How long the final state may take to settle after the last answer (a failed saga's compensation is committed
# before its 4xx is sent, so this is only slack for slow machines).
SETTLE_SECONDS = 20


def call(method, url):
    """Sends one request; returns (status, parsed JSON body or None). Network errors come back as status 0."""
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            return response.status, _json(response.read())
    except urllib.error.HTTPError as error:
        return error.code, _json(error.read())
    except (urllib.error.URLError, OSError) as error:
        return 0, {"error": str(error)}


def _json(raw):
    try:
        return json.loads(raw)
    except ValueError:
        return None


def must(method, url):
    status, body = call(method, url)
    if not 200 <= status < 300:
        sys.exit(f"setup failed: {method} {url} answered {status} {body}")
    return body


def pick(urls, i):
    return urls[i % len(urls)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--order", required=True)
    parser.add_argument("--stock", required=True)
    parser.add_argument("--payment", required=True)
    parser.add_argument("--kill", type=int, metavar="PID", help="SIGKILL this process during the checkouts")
    parser.add_argument("--kill-after", type=int, default=100, metavar="N", help="answers before the kill (100)")
    args = parser.parse_args()
    order_urls = args.order.split(",")
    stock_urls = args.stock.split(",")
    payment_urls = args.payment.split(",")

    must("POST", f"{stock_urls[0]}/stock/batch_init/1/{STOCK}/1")
    must("POST", f"{payment_urls[0]}/payment/batch_init/{USERS}/1")
    item = "0"

    def prepare(user):
        base = pick(order_urls, user)
        order_id = must("POST", f"{base}/orders/create/{user}")["order_id"]
        must("POST", f"{pick(order_urls, user + 1)}/orders/addItem/{order_id}/{item}/1")
        return order_id

    with concurrent.futures.ThreadPoolExecutor(max_workers=64) as pool:
        orders = list(pool.map(prepare, range(USERS)))

    answered = 0
    answered_lock = threading.Lock()

    def checkout(i):
        nonlocal answered
        base = pick(order_urls, i)
        status, body = call("POST", f"{base}/orders/checkout/{orders[i]}")
        with answered_lock:
            answered += 1
            if args.kill is not None and answered == args.kill_after:
                os.kill(args.kill, signal.SIGKILL)
                print(f"killed pid {args.kill} after {answered} answers", flush=True)
        return i, base, status, body

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=USERS) as pool:
        answers = list(pool.map(checkout, range(USERS)))
    elapsed = time.monotonic() - started

    ok = [a for a in answers if 200 <= a[2] < 300]
    refused = [a for a in answers if 400 <= a[2] < 500]
    other = [a for a in answers if not (200 <= a[2] < 300 or 400 <= a[2] < 500)]
    per_replica = {url: sum(1 for a in ok if a[1] == url) for url in order_urls}

    def final_state():
        stocks = [must("GET", f"{url}/stock/find/{item}")["stock"] for url in stock_urls]
        with concurrent.futures.ThreadPoolExecutor(max_workers=64) as pool:
            credits = list(
                pool.map(lambda u: must("GET", f"{pick(payment_urls, u)}/payment/find_user/{u}")["credit"], range(USERS))
            )
        return stocks, sum(credits)

    deadline = time.monotonic() + SETTLE_SECONDS
    stocks, credit_sum = final_state()
    while (stocks[0] != STOCK - len(ok) or credit_sum != USERS - len(ok)) and time.monotonic() < deadline:
        time.sleep(0.5)
        stocks, credit_sum = final_state()

    with concurrent.futures.ThreadPoolExecutor(max_workers=64) as pool:
        paid = list(pool.map(lambda i: must("GET", f"{pick(order_urls, i + 1)}/orders/find/{orders[i]}")["paid"], range(USERS)))
    ok_unpaid = [a for a in ok if not paid[a[0]]]
    refused_paid = [a for a in refused if paid[a[0]]]

    classes = {}
    for a in answers:
        name = "error" if a[2] == 0 else f"{a[2] // 100}xx"
        classes[name] = classes.get(name, 0) + 1
    print(f"checkouts: {len(answers)} in {elapsed:.1f} s; 2xx {len(ok)}, 4xx {len(refused)}, other {len(other)}")
    print("answers by class: " + ", ".join(f"{name} {n}" for name, n in sorted(classes.items())))
    print("2xx per order-svc replica: " + ", ".join(f"{url} {n}" for url, n in per_replica.items()))
    print(f"stock of the item (per stock replica): {stocks}; credit sum: {credit_sum}; paid orders: {sum(paid)}")
    for a in other[:5]:
        print(f"  unexpected answer: {a[1]} order {orders[a[0]]}: {a[2]} {a[3]}")

    checks = {
        f"exactly {STOCK} checkouts succeed": len(ok) == STOCK,
        "no answer other than 2xx or 4xx": not other,
        "stock ends at 0 on every stock replica": all(s == 0 for s in stocks),
        f"credit sum is {USERS - STOCK}": credit_sum == USERS - STOCK,
        "every 2xx order is paid": not ok_unpaid,
        "every 4xx order is unpaid": not refused_paid,
        f"paid orders number {STOCK}": sum(paid) == STOCK,
    }
    for name, held in checks.items():
        print(f"  {'ok  ' if held else 'FAIL'} {name}")
    passed = sum(checks.values())
    print(f"{passed} passed, {len(checks) - passed} failed")
    return 0 if passed == len(checks) else 1


if __name__ == "__main__":
    sys.exit(main())

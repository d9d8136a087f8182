-- wrk script: POST a small JSON refund request (bench/http_proxy.sh).
wrk.method = "POST"
wrk.body = '{"order":"ORD-1042","amount":4999,"currency":"eur","reason":"requested_by_customer","metadata":{"ticket":"T-77","agent":"support-bot"}}'
wrk.headers["Content-Type"] = "application/json"

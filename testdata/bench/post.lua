-- wrk script for .ci/bench: creates an order, the request eventtap's
-- order-created rule taps (POST /orders answered 201).
wrk.method = "POST"
wrk.path = "/orders"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"customer":"c-1","total":12.5,"items":[{"sku":"A-1","qty":2}]}'

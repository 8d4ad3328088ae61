-- SPDX-License-Identifier: EUPL-1.2
-- Asks an HTTP service whether to take each message, once its headers are
-- in: POST {from, to, subject} as JSON; the service answers JSON
-- {"action": "accept" | "reject" | "tempfail", "message": "..."}.  The
-- hook waits for the answer without holding other sessions; if the
-- service cannot be asked, the message is deferred (451).
--   config: {url: "http://127.0.0.1:8088/decide", timeout: 2000}
local url = zmta.config.url
local timeout = zmta.config.timeout or 2000

zmta.hook("message:headers", function(ctx)
  local body = zmta.json.encode({
    from = ctx.envelope.from,
    to = ctx.envelope.to,
    subject = ctx.headers:get("subject"),
  })
  local res = zmta.http.request{method = "POST", url = url, body = body, timeout = timeout,
                                headers = {["Content-Type"] = "application/json"}}
  if res.error or res.status ~= 200 then
    return {tempfail = "451 4.3.0 the decision service is not answering"}
  end
  local answer = zmta.json.decode(res.body)
  if answer.action == "reject" then
    return {reject = "550 5.7.1 " .. (answer.message or "refused")}
  elseif answer.action == "tempfail" then
    return {tempfail = "451 4.7.1 " .. (answer.message or "try again later")}
  end
end)

-- SPDX-License-Identifier: EUPL-1.2
-- The Lua plugin of test_lua_plugins.py: one handler on every hook point,
-- each changing what its point allows, keyed on the addresses, names and
-- headers the tests use (as tests/plugins/test_plugin.c does for C).
local cfg = zmta.config

zmta.hook("smtp:connect", function(ctx)
  if ctx.session.remoteAddress == cfg.refused_client then
    return {reject = "554 5.7.1 not from this address, says Lua"}
  end
end)

zmta.hook("smtp:helo", function(ctx)
  if ctx.session.helo == "lua-bad.test" then
    return {reject = "550 5.7.1 bad HELO, says Lua"}
  end
end)

zmta.hook("smtp:auth", function(ctx)
  if ctx.auth.user == "lua-user" then
    if ctx.auth.password == "lua-pw" then return {accept = true} end
    return {reject = "535 5.7.8 wrong password, says Lua"}
  end
end)

zmta.hook("smtp:mail_from", function(ctx)
  if ctx.address:match("^lua%-reject@") then
    return {reject = "550 5.7.1 sender refused by Lua"}
  end
end)

zmta.hook("smtp:rcpt_to", function(ctx)
  local addr = ctx.address
  if addr:match("^blocked%-") then
    return {reject = "550 5.1.1 <" .. addr .. ">: refused by pattern"}
  elseif addr:match("^later%-") then
    return {tempfail = "451 4.7.1 try later, says Lua"}
  elseif addr:match("^ask%-") then
    -- a per-recipient decision from an HTTP service
    local res = zmta.http.request{url = cfg.decision_url, timeout = 5000,
                                  headers = {["X-Rcpt"] = addr}}
    if res.error then return {tempfail = "451 4.3.0 decision service: " .. res.error} end
    if res.status ~= 200 or res.body ~= "ok" then
      return {reject = "550 5.7.1 the decision service said " .. res.status}
    end
  elseif addr:match("^nap%-") then
    zmta.sleep(tonumber(addr:match("^nap%-(%d+)")))
  end
end)

zmta.hook("smtp:data", function(ctx)
  for _, r in ipairs(ctx.envelope.to) do
    if r:match("^data%-reject@") then return {reject = "550 5.7.1 no data for you, says Lua"} end
  end
end)

zmta.hook("message:headers", function(ctx)
  if ctx.headers:get("x-lua-refuse") then
    return {reject = "550 5.7.1 header refused by Lua"}
  end
  ctx.headers:add("X-Lua-Seen", ctx.envelope.from .. " via " .. ctx.session.interface)
  ctx.headers:set("Subject", "[lua] " .. (ctx.headers:get("Subject") or ""))
  ctx.headers:remove("X-Lua-Secret")
  if ctx.headers:get("x-lua-zone") then
    ctx.zone = ctx.headers:get("x-lua-zone") -- every recipient
  end
end)

zmta.hook("message:store", function(ctx)
  if ctx.size > (cfg.max_size or 1000000) then
    return {reject = "552 5.3.4 too big for Lua"}
  end
end)

zmta.hook("message:queue", function(ctx)
  if ctx.envelope.from:match("^queue%-later@") then
    return {tempfail = "451 4.7.1 queue closed by Lua"}
  end
end)

zmta.hook("queue:route", function(ctx)
  if ctx.address and ctx.address:match("^route%-other@") then
    ctx.zone = "other"
  end
end)

zmta.hook("sender:connect", function(ctx)
  if ctx.delivery.domain == "connect-reject.test" then
    return {reject = "550 5.7.1 refused by Lua before connecting"}
  end
end)

zmta.hook("sender:headers", function(ctx)
  ctx.headers:add("X-Lua-Sender", ctx.delivery.zone .. " " .. (ctx.delivery.mx or "?"))
end)

zmta.hook("sender:delivered", function(ctx)
  zmta.log("info", "delivered", {rcpt = ctx.address, code = ctx.delivery.code})
end)

zmta.hook("sender:responseError", function(ctx)
  zmta.log("info", "responseError", {rcpt = ctx.address, code = ctx.delivery.code,
                                     category = ctx.delivery.category})
end)

zmta.hook("queue:bounce", function(ctx)
  zmta.log("warn", "bounce", {rcpt = ctx.address, response = ctx.delivery.response})
end)

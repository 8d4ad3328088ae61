-- SPDX-License-Identifier: EUPL-1.2
-- An example zone-mta plugin (Lua 5.4; docs/plugins.md).  Enable it in
-- config/default.yaml:
--
--   plugins:
--     - name: example
--       path: example.lua
--       config: {header: X-Example, refuse: "^spamtrap@"}
--
-- The file runs once when the plugin loads: it reads its settings from
-- zmta.config and registers handlers with zmta.hook(name, fn).  A handler
-- gets the call's context (ctx) and answers with nothing (go on) or a
-- table: {reject = "550 5.7.1 ..."}, {tempfail = "451 4.7.1 ..."},
-- {accept = true}.
local header = zmta.config.header or "X-Example"
local refuse = zmta.config.refuse

zmta.hook("smtp:rcpt_to", function(ctx)
  if refuse and ctx.address:lower():match(refuse) then
    return {reject = "550 5.1.1 <" .. ctx.address .. ">: this address takes no mail"}
  end
end)

zmta.hook("message:headers", function(ctx)
  -- Prepended, as a trace field is; the other fields keep their bytes.
  ctx.headers:add(header, "seen by " .. zmta.name .. " at " .. os.date("!%Y-%m-%dT%H:%M:%SZ"))
end)

zmta.hook("queue:bounce", function(ctx)
  zmta.log("info", "bounced", {rcpt = ctx.address, response = ctx.delivery.response})
end)

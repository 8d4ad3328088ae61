-- SPDX-License-Identifier: EUPL-1.2
-- Refuses recipients whose address matches one of the Lua patterns, at
-- RCPT, with a permanent failure the client sees at once.
--   config: {patterns: ["^noreply@", "@example%.invalid$"]}
local patterns = zmta.config.patterns or {}

zmta.hook("smtp:rcpt_to", function(ctx)
  local addr = ctx.address:lower()
  for _, p in ipairs(patterns) do
    if addr:match(p) then
      zmta.log("info", "refused", {rcpt = addr, pattern = p})
      return {reject = "550 5.7.1 <" .. ctx.address .. ">: recipient not accepted here"}
    end
  end
end)

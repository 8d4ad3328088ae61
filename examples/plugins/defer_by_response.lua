-- SPDX-License-Identifier: EUPL-1.2
-- Chooses when a failed delivery is tried again from what the server said,
-- instead of the queue.deferTimes schedule; and bounces at once what will
-- not get better.
--   config: {greylist: 300, ratelimit: 1800}
local greylist = zmta.config.greylist or 300
local ratelimit = zmta.config.ratelimit or 1800

zmta.hook("sender:responseError", function(ctx)
  local r = (ctx.delivery.response or ""):lower()
  if r:match("greylist") or r:match("try again in a few minutes") then
    return {defer = greylist}
  elseif r:match("rate limit") or r:match("too many") then
    return {defer = ratelimit}
  elseif r:match("^452") and r:match("quota") then
    return {bounce = "550 5.2.2 <" .. ctx.address .. ">: mailbox full"}
  end
end)

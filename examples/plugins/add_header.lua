-- SPDX-License-Identifier: EUPL-1.2
-- Adds a header to every message as it arrives, and another as each
-- delivery leaves (with the zone and the host it goes to).
--   config: {name: X-Relayed-By, value: "relay-1"}
local name = zmta.config.name or "X-Relayed-By"
local value = zmta.config.value or "zone-mta"

zmta.hook("message:headers", function(ctx)
  ctx.headers:add(name, value)
end)

zmta.hook("sender:headers", function(ctx)
  ctx.headers:set("X-Delivery-Zone", ctx.delivery.zone .. " to " .. (ctx.delivery.mx or "?"))
end)

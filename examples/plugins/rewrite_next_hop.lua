-- SPDX-License-Identifier: EUPL-1.2
-- Sends the mail of some recipient domains to a host of your choice
-- instead of their MX (a partner's gateway, a test sink), per connection.
-- The zone's smart-host credentials are never sent to such a host.
--   config: {routes: {"partner.example": "gw.partner.example:2525"}}
local routes = zmta.config.routes or {}

zmta.hook("sender:connect", function(ctx)
  local route = routes[ctx.delivery.domain]
  if route then
    local host, port = route:match("^([^:]+):?(%d*)$")
    ctx.nextHop = host
    if port ~= "" then ctx.nextPort = tonumber(port) end
  end
end)

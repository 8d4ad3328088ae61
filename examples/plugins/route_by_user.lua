-- SPDX-License-Identifier: EUPL-1.2
-- Sends the mail of authenticated users through a zone of their own;
-- everyone else keeps the zone the routing rules chose.
--   config: {zones: {alice: trusted, bob: bulk}}
local zones = zmta.config.zones or {}

zmta.hook("queue:route", function(ctx)
  local user = ctx.session.user
  if user and zones[user] then
    ctx.zone = zones[user]
  end
end)

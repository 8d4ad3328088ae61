-- SPDX-License-Identifier: EUPL-1.2
-- Rules of the e2e tests' Rspamd: a marker in the message picks the
-- action (GTUBE, built into Rspamd, gives reject).
local function body_has(task, s)
  return tostring(task:get_content()):find(s, 1, true) ~= nil
end
rspamd_config:register_symbol({
  name = 'ZMTA_TEST_SOFT', score = 0.0,
  callback = function(task)
    if body_has(task, 'SOFT-REJECT-TEST') then
      task:set_pre_result('soft reject', 'Try again later (test)')
      return true
    end
  end
})
rspamd_config:register_symbol({
  name = 'ZMTA_TEST_SPAMMY', score = 7.0,
  callback = function(task)
    if body_has(task, 'ADD-HEADER-TEST') then return true end
  end
})
rspamd_config:register_symbol({
  name = 'ZMTA_TEST_SPAMMIER', score = 11.0,
  callback = function(task)
    if body_has(task, 'REWRITE-SUBJECT-TEST') then return true end
  end
})

-- Argo CD actions for a TwilioApiKey. "rotate" issues a new key now (rotate/action.lua); it is
-- disabled while the operator would not act on it: the resource is suspended, revoked (it has
-- no key), or being deleted.
local actions = {}
local idle = obj.metadata.deletionTimestamp ~= nil
if obj.spec ~= nil and (obj.spec.suspend == true or obj.spec.revoked == true) then
  idle = true
end
actions["rotate"] = { ["disabled"] = idle, ["displayName"] = "Rotate key now" }
return actions

-- Argo CD health check for twilio-operator.dev's TwilioApiKey, TwilioAccount and
-- ClusterTwilioAccount (the same file for each kind). It reads the kstatus conditions the
-- operator writes (docs/behaviour.md, "Conditions"), and only those that describe the current
-- metadata.generation:
--   Suspended    spec.suspend is true (the operator then writes nothing, status included), or
--                Ready is False with reason Revoked (spec.revoked: the keys are deleted)
--   Degraded     Stalled is True: someone must change something
--   Progressing  Reconciling is True; no status yet; the status is for an older generation;
--                or Ready is not True for another reason
--   Healthy      Ready is True
-- Argo CD runs it under gopher-lua (Lua 5.1) without the standard libraries: base functions
-- only, no string or math library (argocd/test.lua runs it the same way).

local function describe(condition)
  local reason = condition.reason or condition.type
  if condition.message == nil or condition.message == "" then
    return reason
  end
  return reason .. ": " .. condition.message
end

-- Generations compared as text: a number or a string, however the object was decoded.
local function same(a, b)
  return tostring(a) == tostring(b)
end

if obj.spec ~= nil and obj.spec.suspend == true then
  return { status = "Suspended", message = "spec.suspend is true: twilio-operator makes no changes" }
end

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end
local status = obj.status
if status == nil or status.conditions == nil then
  return { status = "Progressing", message = "Waiting for twilio-operator to report conditions" }
end
if generation ~= nil and status.observedGeneration ~= nil and not same(status.observedGeneration, generation) then
  return {
    status = "Progressing",
    message = "Waiting for twilio-operator to act on generation " .. tostring(generation)
      .. " (the status is for generation " .. tostring(status.observedGeneration) .. ")",
  }
end

-- The conditions that describe the current generation, by type.
local current = {}
for _, condition in ipairs(status.conditions) do
  local observed = condition.observedGeneration
  if condition.type ~= nil and (generation == nil or observed == nil or same(observed, generation)) then
    current[condition.type] = condition
  end
end

if current.Stalled ~= nil and current.Stalled.status == "True" then
  return { status = "Degraded", message = describe(current.Stalled) }
end
if current.Reconciling ~= nil and current.Reconciling.status == "True" then
  return { status = "Progressing", message = describe(current.Reconciling) }
end
local ready = current.Ready
if ready == nil then
  return { status = "Progressing", message = "Waiting for twilio-operator to report Ready for the current generation" }
end
if ready.status == "True" then
  return { status = "Healthy", message = describe(ready) }
end
if ready.reason == "Revoked" then
  return { status = "Suspended", message = describe(ready) }
end
return { status = "Progressing", message = describe(ready) }

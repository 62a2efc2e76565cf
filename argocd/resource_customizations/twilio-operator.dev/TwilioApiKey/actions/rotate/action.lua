-- Argo CD action "rotate" for a TwilioApiKey: gives the annotation twilio-operator.dev/rotate a
-- new value, and the operator rotates the key as when the annotation is changed by hand: a new
-- key in the Secret, the old one valid for spec.rotation.gracePeriod more.
--
-- The value is the current UTC time, from the os library Argo CD gives actions (its safe
-- subset: os.time and os.date, through require("os")), using only conversions its os.date
-- implements. Only a value different from the current annotation and from the one the current
-- key was made for (status.lastRotateAnnotation) rotates, so a second run within the same
-- second gets a suffix.
local os = require("os")
local annotation = "twilio-operator.dev/rotate"
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
local taken = {}
if obj.metadata.annotations[annotation] ~= nil then
  taken[obj.metadata.annotations[annotation]] = true
end
if obj.status ~= nil and obj.status.lastRotateAnnotation ~= nil then
  taken[obj.status.lastRotateAnnotation] = true
end
local now = os.date("!%Y-%m-%dT%H:%M:%SZ")
local value, suffix = now, 0
while taken[value] do
  suffix = suffix + 1
  value = now .. "-" .. suffix
end
obj.metadata.annotations[annotation] = value
return obj

-- Argo CD health of a serinus.dev ModelDeployment (docs/gitops.md).
--
--   Healthy      the spec's revision is stable and available, no rollout runs (Ready=True)
--   Progressing  the operator has not seen this generation yet, or a rollout (or the first
--                revision) is on its way on its own
--   Suspended    a rollout is paused: it waits for `promote` / `resume` (or, under
--                resumeOnPass, for a passing measurement)
--   Degraded     rolled back or aborted, an invalid spec, or stuck (status condition Stalled)
--
-- Argo CD runs custom checks with the base and table libraries only (no string, no math),
-- so this script uses nothing else.
local hs = {}

local function condition(status, kind)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function say(health, message)
  hs.status = health
  hs.message = message
  return hs
end

local status = obj.status
if status == nil or status.observedGeneration == nil then
  return say("Progressing", "Waiting for the Serinus operator to observe the ModelDeployment")
end
local generation = obj.metadata.generation
if generation ~= nil and tonumber(status.observedGeneration) ~= tonumber(generation) then
  return say("Progressing", "Waiting for the Serinus operator to observe generation " .. tostring(generation))
end

local phase = status.phase
local message = status.message
if message == nil or message == "" then
  message = "phase " .. tostring(phase)
end
local stalled = condition(status, "Stalled")
local ready = condition(status, "Ready")

if phase == "Degraded" or phase == "RolledBack" then
  return say("Degraded", message)
end
if phase == "Paused" then
  return say("Suspended", message)
end
if stalled ~= nil and stalled.status == "True" then
  return say("Degraded", stalled.message or message)
end
if phase == "Stable" and ready ~= nil and ready.status == "True" then
  return say("Healthy", message)
end
return say("Progressing", message)

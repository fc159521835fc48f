-- Argo CD health for Prospector's Customer, AgentDeployment and KnowledgeDocument (and Tier):
-- the Ready condition the operator writes, once it has seen the object's current generation.
local hs = { status = "Progressing", message = "Waiting for the Prospector operator" }
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
local ready = nil
local suspended = false
for _, condition in ipairs(obj.status.conditions) do
  if condition.type == "Ready" then
    ready = condition
  elseif condition.type == "Suspended" and condition.status == "True" then
    suspended = true
  end
end
if ready == nil then
  return hs
end
local generation = obj.metadata.generation
if generation ~= nil and ready.observedGeneration ~= nil and ready.observedGeneration < generation then
  hs.message = "The operator has not reconciled generation " .. generation .. " yet"
  return hs
end
hs.message = ready.message or ""
if suspended then
  hs.status = "Suspended"
elseif ready.status == "True" then
  hs.status = "Healthy"
else
  -- Reasons that change without anyone acting; every other reason needs a person
  -- (docs/troubleshooting.md says what to do about each).
  local progressing = {
    InProgress = true, Queued = true, Retrying = true, ReplicasUnavailable = true,
    SourceNotFound = true, Terminating = true,
  }
  if progressing[ready.reason] then
    hs.status = "Progressing"
  else
    hs.status = "Degraded"
  end
  if hs.message == "" then
    hs.message = ready.reason
  end
end
return hs

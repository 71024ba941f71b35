-- Argo CD action "pause" on a serinus.dev ModelDeployment: the request `kubectl serinus`
-- makes, made the same way: the serinus.dev/action annotation set to "<action>:<nonce>"
-- (spec is never touched: Git owns it). The operator applies each "<action>:<nonce>" once.
-- The nonce is the object's resourceVersion, not a clock (Argo CD's Lua has only os.time,
-- to the second): every write changes it, this request's own included, so a request made
-- on what Argo CD last read is new to the operator, and the same request repeated on the
-- same version is one request.
local action = "pause"
local version = obj.metadata.resourceVersion
if version == nil or version == "" then
  error("serinus: no metadata.resourceVersion: run " .. action .. " on the live ModelDeployment", 0)
end
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["serinus.dev/action"] = action .. ":argocd-" .. version
return obj

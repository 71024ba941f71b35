-- Which Serinus actions Argo CD offers for a serinus.dev ModelDeployment, as
-- `kubectl serinus` would accept them now (the operator still has the last word: a request
-- that makes no sense when it arrives is recorded as ignored in status.lastAction).
local actions = {}
local status = obj.status
if status == nil then
  status = {}
end
local candidate = status.candidate
local rolling = candidate ~= nil
local paused = rolling and candidate.pause ~= nil
local awaitsPromote = paused and candidate.pause.reason == "AwaitingPromotion"
local rolledBack = status.rolledBack
local retriable = not rolling and rolledBack ~= nil and rolledBack.revision == status.revision

actions["promote"] = {["disabled"] = not rolling, ["iconClass"] = "fa fa-fw fa-forward"}
actions["promote-full"] = {["disabled"] = not rolling, ["iconClass"] = "fa fa-fw fa-fast-forward"}
actions["abort"] = {["disabled"] = not rolling, ["iconClass"] = "fa fa-fw fa-times-circle"}
actions["pause"] = {["disabled"] = not rolling or paused, ["iconClass"] = "fa fa-fw fa-pause-circle"}
actions["resume"] = {["disabled"] = not paused or awaitsPromote, ["iconClass"] = "fa fa-fw fa-play-circle"}
actions["retry"] = {["disabled"] = not retriable, ["iconClass"] = "fa fa-fw fa-redo-alt"}
return actions

-- Argo CD resource actions of a ListaCompraRelease (listacompra.app), as kubectl listacompra
-- offers them:
--   retry   after a rollback or failure, or while the release waits for a person (Stalled)
--   pause   when not paused;  resume  when paused
--   abort   while an attempt is in flight (Pending .. Verifying) and the operator has
--           observed the latest generation (else a newer attempt starts first): rolls back now
-- There is no approve action: Argo CD runs actions as its own service account, so the API
-- server could not tell who approved. Approvers run `kubectl listacompra approve`.
-- Runs without Lua's string library (Argo CD opens only base, table, package and os).
local actions = {}
local spec = obj.spec or {}
local status = obj.status or {}
local phase = status.phase

local stalled = false
if status.conditions ~= nil then
  for _, c in ipairs(status.conditions) do
    if c.type == "Stalled" and c.status == "True" then
      stalled = true
    end
  end
end
local ended = phase == "RolledBack" or phase == "Failed"
local observed = status.observedGeneration ~= nil and obj.metadata.generation ~= nil
  and status.observedGeneration >= obj.metadata.generation
local inFlight = phase == "Pending" or phase == "AwaitingApproval" or phase == "Migrating"
  or phase == "RollingOut" or phase == "Verifying"

actions["retry"] = { ["disabled"] = not (ended or stalled), ["iconClass"] = "fa fa-fw fa-redo" }
actions["pause"] = { ["disabled"] = spec.paused == true, ["iconClass"] = "fa fa-fw fa-pause-circle" }
actions["resume"] = { ["disabled"] = spec.paused ~= true, ["iconClass"] = "fa fa-fw fa-play-circle" }
actions["abort"] = {
  ["disabled"] = not (inFlight and observed and status.attempt ~= nil),
  ["iconClass"] = "fa fa-fw fa-times-circle",
}
return actions

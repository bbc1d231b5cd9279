-- Argo CD health of a ListaCompraRelease (listacompra.app), read from its status.
--   Succeeded                                           -> Healthy (Progressing while it rotates Secrets)
--   Pending, Migrating, RollingOut, Verifying, RollingBack -> Progressing
--   Restoring (a ListaCompraRestore runs; the API may be stopped) -> Progressing
--   AwaitingApproval, held for a person (Progressing=False), or spec.paused -> Suspended
--   Stalled on a missing Secret/ConfigMap/ServiceAccount, someone else's object, firing
--   alerts, a failed Secret rotation or a failed restore -> Degraded
--   RolledBack, Failed                                  -> Degraded (which version failed, which serves)
--   no status yet, or status.observedGeneration < metadata.generation -> Progressing
-- Runs without Lua's string library (Argo CD opens only base, table, package and os).
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

local function why(status)
  local degraded = condition(status, "Degraded")
  if degraded ~= nil and degraded.status == "True" and degraded.message ~= nil then
    return " (" .. (degraded.reason or "Degraded") .. ": " .. degraded.message .. ")"
  end
  return ""
end

local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to pick up the release"
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local phase = status.phase
local version = status.currentVersion or (obj.spec and obj.spec.version) or "the new version"
local failed = status.failedVersion or version
local stable = status.stableVersion

if phase == "RolledBack" then
  hs.status = "Degraded"
  hs.message = failed .. " failed" .. why(status) .. "; rolled back, " .. (stable or "the stable version") .. " serves"
  return hs
end

if phase == "Failed" then
  hs.status = "Degraded"
  local serving = "no version has passed the gates yet"
  if stable ~= nil then
    serving = "nothing was rolled back; the last stable version is " .. stable
  end
  hs.message = failed .. " failed" .. why(status) .. "; " .. serving
  return hs
end

local progressing = condition(status, "Progressing")
local stalled = condition(status, "Stalled")
local serving = ""
if stable ~= nil and phase ~= "Succeeded" and phase ~= "Restoring" then
  serving = "; " .. stable .. " serves"
end
local blocked = {
  ReferencesMissing = true, ObjectNotOwned = true, AlertsFiring = true, AlertsUnknown = true,
  SecretRotationFailed = true, RestoreFailed = true, RestoreAbandoned = true,
}
if stalled ~= nil and stalled.status == "True" and blocked[stalled.reason] then
  -- Blocked by something outside the release (a Secret still missing at the deadline, a
  -- Service of someone else's, alerts firing, a rotated Secret its pods fail with): needs
  -- attention, and clears once fixed.
  hs.status = "Degraded"
  hs.message = phase .. ": " .. (stalled.message or stalled.reason) .. serving
  return hs
end

if obj.spec ~= nil and obj.spec.paused == true then
  hs.status = "Suspended"
  hs.message = "spec.paused is true: the release of " .. version .. " waits at its next step (phase " .. phase .. ")"
  return hs
end

local reconciling = condition(status, "Reconciling")
if phase == "Succeeded" and reconciling ~= nil and reconciling.status == "True" then
  -- Its pods roll with a changed Secret, then pass the health gate.
  hs.status = "Progressing"
  hs.message = phase .. ": " .. (reconciling.message or "rotating Secrets")
  return hs
end

if phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = version .. " serves"
  return hs
end

-- What the Progressing condition says, else `default`.
local function detail(default)
  if progressing ~= nil and progressing.message ~= nil then
    return progressing.message
  end
  return default
end

if phase == "AwaitingApproval" then
  -- Waits for people (QA, the Product Owner) to approve, like a paused Rollout; the
  -- condition names the roles still missing.
  hs.status = "Suspended"
  hs.message = phase .. ": " .. detail("waiting for approvals") .. serving
  return hs
end

if phase == "Restoring" then
  -- A restore of the database runs: the release goes back to its phase once it is done.
  hs.status = "Progressing"
  hs.message = phase .. ": " .. detail("a restore of the database runs")
  return hs
end

local moving = { Pending = true, Migrating = true, RollingOut = true, Verifying = true, RollingBack = true }
if moving[phase] then
  if progressing ~= nil and progressing.status == "False" then
    -- The operator holds the release for a person (for example an inconclusive analysis).
    hs.status = "Suspended"
    hs.message = phase .. ": " .. (progressing.message or "held") .. serving
    return hs
  end
  hs.status = "Progressing"
  hs.message = phase .. ": " .. detail("releasing " .. version) .. serving
  return hs
end

hs.status = "Unknown"
hs.message = "Unknown phase " .. tostring(phase)
return hs

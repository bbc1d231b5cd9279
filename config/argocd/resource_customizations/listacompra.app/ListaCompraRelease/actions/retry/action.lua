-- Release the same version again: a retry token named after the attempt that ended, so a
-- second click before the operator starts the new attempt changes nothing.
local attempt = 0
if obj.status ~= nil and obj.status.attempt ~= nil then
  attempt = obj.status.attempt
end
obj.spec.retryToken = "retry-after-attempt-" .. tostring(attempt)
return obj

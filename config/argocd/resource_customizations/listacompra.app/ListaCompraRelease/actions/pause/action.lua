-- Stop the release at its next step (spec.paused).
obj.spec.paused = true
return obj

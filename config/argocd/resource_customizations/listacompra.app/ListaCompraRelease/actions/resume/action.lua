-- Let a paused release go on (spec.paused).
obj.spec.paused = false
return obj

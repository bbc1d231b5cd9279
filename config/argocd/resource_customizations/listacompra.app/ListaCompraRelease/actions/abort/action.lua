-- Roll the attempt in flight back now: the annotation names the attempt, so it never touches
-- a later one (the spec is not changed).
if obj.status == nil or obj.status.attempt == nil then
  return obj
end
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["listacompra.app/abort"] = tostring(obj.status.attempt)
return obj

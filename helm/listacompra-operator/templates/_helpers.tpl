{{/* Chart name, overridable. */}}
{{- define "listacompra-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name of the release's objects: the release name when it already names the chart. */}}
{{- define "listacompra-operator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Name of cluster-scoped objects: unique per release namespace as well. */}}
{{- define "listacompra-operator.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "listacompra-operator.fullname" .) -}}
{{- end -}}

{{- define "listacompra-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels: stable across upgrades. */}}
{{- define "listacompra-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "listacompra-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "listacompra-operator.labels" -}}
helm.sh/chart: {{ include "listacompra-operator.chart" . }}
{{ include "listacompra-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: listacompra
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "listacompra-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "listacompra-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false: name the existing ServiceAccount the operator runs as" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "listacompra-operator.leaseName" -}}
{{- default (include "listacompra-operator.fullname" .) .Values.leaderElection.leaseName -}}
{{- end -}}

{{- define "listacompra-operator.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
The rules the controller needs in each namespace it acts on, derived from
operator/src/controller.rs (kube-runtime Controller, reconcile, Recorder). Nothing else.
*/}}
{{- define "listacompra-operator.rules" -}}
# The Controller lists and watches releases; reconciles read them from that cache, and a
# reconcile about to act first confirms (get) that its copy is still the current one.
- apiGroups: [listacompra.app]
  resources: [listacomprareleases]
  verbs: [get, list, watch]
# Status only (server-side apply): the operator never writes a release's spec.
- apiGroups: [listacompra.app]
  resources: [listacomprareleases/status]
  verbs: [patch]
# Children carry an ownerReference with blockOwnerDeletion to their release, which the
# OwnerReferencesPermissionEnforcement admission plugin (when enabled) allows only with this.
- apiGroups: [listacompra.app]
  resources: [listacomprareleases/finalizers]
  verbs: [update]
# Migration, schema-revert and smoke-test Jobs: watched (owned), read, created, deleted when
# superseded.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, delete]
# The API Deployment: watched (owned), read, and applied (server-side apply = patch, and
# create when it does not exist yet).
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch]
# The API Service: watched (owned, so a deleted or edited Service is put back), read, and
# applied.
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch]
# The record of each stable version's spec, for exact rollbacks: watched (into the cache
# reconciles read), created, old ones deleted.
- apiGroups: [apps]
  resources: [controllerrevisions]
  verbs: [get, list, watch, create, patch, delete]
# The backup CronJobs (spec.backups): watched (owned, so what they last did reaches the
# release's status), applied, and deleted when the spec drops them.
- apiGroups: [batch]
  resources: [cronjobs]
  verbs: [get, list, watch, create, patch, delete]
# The pods of a Job that failed, listed by its label once, so that the release's conditions
# quote the command's own error (the container's termination message); and, while a restore
# runs, the release's API and worker pods and the database's, listed by label (metadata only)
# until they are gone or ready. Never read otherwise.
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
# Restores: watched (one wakes the release it names) and read from that cache; a restore
# step about to act confirms (get) that its copy is still the current one. Their status is
# written (refused, waiting for approvals, or each step of the one its release carries out);
# never their spec.
- apiGroups: [listacompra.app]
  resources: [listacomprarestores]
  verbs: [get, list, watch]
- apiGroups: [listacompra.app]
  resources: [listacomprarestores/status]
  verbs: [patch]
# The database StatefulSet a release's spec.backups.database names, for a restore: read, and
# scaled to 0 and back through its scale subresource, the only change the operator makes to
# it (rbac.statefulSetNames limits which).
- apiGroups: [apps]
  resources: [statefulsets]
  verbs: [get]
  {{- with .Values.rbac.statefulSetNames }}
  resourceNames: {{ toJson . }}
  {{- end }}
- apiGroups: [apps]
  resources: [statefulsets/scale]
  verbs: [patch]
  {{- with .Values.rbac.statefulSetNames }}
  resourceNames: {{ toJson . }}
  {{- end }}
# Health-check token and Prometheus credentials: read by name.
# The operator also checks, by metadata only, that every Secret a release names exists
# before it launches anything; a name outside rbac.secretNames answers 403 and is not
# checked (its pods will say if it is missing).
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
  {{- with .Values.rbac.secretNames }}
  resourceNames: {{ toJson . }}
  {{- end }}
{{- if .Values.secretRotation.enabled }}
# Secret rotation: the operator watches Secrets' metadata (it never requests their data
# this way), to roll the pods that consume one when it changes.
- apiGroups: [""]
  resources: [secrets]
  verbs: [list, watch]
{{- end }}
# ConfigMaps (spec.env.envFrom) and the ServiceAccount (spec.pod.serviceAccountName) a
# release names: checked to exist, by metadata only, before anything is launched.
- apiGroups: [""]
  resources: [configmaps, serviceaccounts]
  verbs: [get]
# Approvals: listed by release (the API server selects on spec.release) while a release
# waits for them, and watched so that a new approval wakes its release. Never written.
- apiGroups: [listacompra.app]
  resources: [listacompraapprovals]
  verbs: [list, watch]
# Events about releases (events.k8s.io, created then patched as a series).
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end -}}

{{/*
A policy binding's matchResources: the watched namespaces only (two installs, staging and
production, each check their own namespace with their own roles); every namespace when the
operator is cluster-wide.
*/}}
{{- define "listacompra-operator.watchedNamespacesSelector" -}}
{{- if .Values.watchNamespaces -}}
matchResources:
  namespaceSelector:
    matchExpressions:
      - key: kubernetes.io/metadata.name
        operator: In
        values: {{ toJson .Values.watchNamespaces }}
{{- end }}
{{- end -}}

{{/* The release's base name, at most 63 characters. */}}
{{- define "serinus.fullname" -}}
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

{{- define "serinus.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that select the operator's pods: stable across upgrades. */}}
{{- define "serinus.selectorLabels" -}}
app.kubernetes.io/name: {{ include "serinus.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "serinus.labels" -}}
{{ include "serinus.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: serinus
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "serinus.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "serinus.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* repository[:tag][@digest] from an image block; the tag defaults to the appVersion. */}}
{{- define "serinus.image" -}}
{{- $image := index . 0 -}}
{{- $root := index . 1 -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "serinus.routerImage" -}}
{{- if .Values.routerImage.repository -}}
{{- include "serinus.image" (list .Values.routerImage .) -}}
{{- else -}}
{{- include "serinus.image" (list .Values.servingImage .) -}}
{{- end -}}
{{- end -}}

{{/* Peering (leader election) is on when more than one replica runs. */}}
{{- define "serinus.peering" -}}
{{- if gt (int .Values.replicas) 1 -}}true{{- end -}}
{{- end -}}

{{/* Rules for the resources the operator manages in each namespace it watches. */}}
{{- define "serinus.namespacedRules" -}}
- apiGroups: [serinus.dev]
  resources: [modeldeployments]
  verbs: [get, list, watch, patch]
- apiGroups: [serinus.dev]
  resources: [modeldeployments/status]
  verbs: [patch]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, delete]
# Every child is written with server-side apply (a patch; creating one needs create too)
# and watched, so that one deleted or edited by hand is put back within seconds.
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch, delete]
# The router's Role grants get/watch on its ConfigMap: RBAC lets the operator create it
# only because the operator holds those verbs on configmaps itself.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch, create, patch]
- apiGroups: [""]
  resources: [serviceaccounts]
  verbs: [get, list, watch, create, patch]
- apiGroups: [rbac.authorization.k8s.io]
  resources: [roles, rolebindings]
  verbs: [get, list, watch, create, patch]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
# Only `get`, and only the Secret a ModelDeployment names in spec.model.credentials: to
# ask its model store what an alias or a tag names now (docs/models.md).
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
# Only `list`, and only the pods of a revision that is not ready: to say why in the status.
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
- apiGroups: [gateway.networking.k8s.io]
  resources: [httproutes]
  verbs: [get, list, watch, create, patch]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, list, watch, create, patch, delete]
{{- end -}}

{{- define "serinus.peeringRules" -}}
- apiGroups: [kopf.dev]
  resources: [{{ . }}]
  verbs: [get, list, watch, patch]
{{- end -}}

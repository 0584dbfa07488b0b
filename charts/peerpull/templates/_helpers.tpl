{{/*
Expand the name of the chart.
*/}}
{{- define "peerpull.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
We truncate at 63 chars because some Kubernetes name fields are limited to this (by the DNS naming spec).
If release name contains chart name it will be used as a full name.
*/}}
{{- define "peerpull.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The namespace everything is installed in.
*/}}
{{- define "peerpull.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create chart name and version as used by the chart label.
*/}}
{{- define "peerpull.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "peerpull.labels" -}}
helm.sh/chart: {{ include "peerpull.chart" . }}
{{ include "peerpull.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels.
*/}}
{{- define "peerpull.selectorLabels" -}}
app.kubernetes.io/name: {{ include "peerpull.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The service account's name.
*/}}
{{- define "peerpull.serviceAccountName" -}}
{{- default (include "peerpull.fullname" .) .Values.serviceAccount.name }}
{{- end }}

{{/*
The peerpull image: repository:tag, or repository@digest when a digest is given.
*/}}
{{- define "peerpull.image" -}}
{{- $repository := required "image.repository is required" .Values.image.repository }}
{{- $tag := default .Chart.AppVersion .Values.image.tag | toString }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repository $tag }}
{{- end }}
{{- end }}

{{/*
The headless service peers bootstrap through, as `peerpull run --bootstrap` takes it.
*/}}
{{- define "peerpull.bootstrap" -}}
{{- printf "dns:%s-bootstrap.%s.svc.%s:%v" (include "peerpull.fullname" .) (include "peerpull.namespace" .) (trimSuffix "." .Values.clusterDomain) .Values.service.router.port }}
{{- end }}

{{/*
The NODE_IP variable: the node's IP from the downward API, or the nodeIp override.
*/}}
{{- define "peerpull.nodeIpEnv" -}}
- name: NODE_IP
{{- if .Values.service.registry.nodeIp }}
  value: {{ .Values.service.registry.nodeIp | quote }}
{{- else }}
  valueFrom:
    fieldRef:
      fieldPath: status.hostIP
{{- end }}
{{- end }}

{{/*
containerd's certs.d: the volume and its mount, shared by configure and cleanup.
*/}}
{{- define "peerpull.configPathVolume" -}}
- name: containerd-config
  hostPath:
    path: {{ required "peerpull.containerdRegistryConfigPath is required" .Values.peerpull.containerdRegistryConfigPath }}
    type: DirectoryOrCreate
{{- end }}

{{/*
The Secret holding the pre-shared key: the one named by psk.existingSecret, or the chart's own.
*/}}
{{- define "peerpull.pskSecret" -}}
{{- default (printf "%s-psk" (include "peerpull.fullname" .)) .Values.peerpull.psk.existingSecret -}}
{{- end }}

{{/*
"true" when the daemon reads its node's zone label from the Node object
(peerpull.zone.fromNode, and no fixed peerpull.zone.name): the pods then need
a token and the node-reader RBAC. Empty otherwise.
*/}}
{{- define "peerpull.zoneFromNode" -}}
{{- if and .Values.peerpull.zone.fromNode (not .Values.peerpull.zone.name) }}true{{ end }}
{{- end }}

{{/*
The ClusterRole and ClusterRoleBinding that let the pods read Nodes; cluster-scoped,
so the namespace is part of the name.
*/}}
{{- define "peerpull.nodeReader" -}}
{{- printf "%s-%s-node-reader" (include "peerpull.namespace" .) (include "peerpull.fullname" .) }}
{{- end }}

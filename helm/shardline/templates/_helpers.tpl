{{/* Names and labels. */}}
{{- define "shardline.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "shardline.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "shardline.labels" -}}
{{ include "shardline.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* A model name as a Kubernetes-safe group name: llm-<name>. */}}
{{- define "shardline.groupName" -}}
{{- printf "llm-%s" (. | lower | replace "_" "-" | replace "." "-") | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* The Ray custom resource that pins a model's replicas to its own worker group. */}}
{{- define "shardline.modelResource" -}}
{{- printf "shardline-model-%s" . -}}
{{- end -}}

{{/* rayStartParams.resources: KubeRay pastes it into a shell command line, so the
JSON is single-quoted (the form KubeRay itself writes). */}}
{{- define "shardline.rayResources" -}}
{{- printf "'%s'" (toJson .) | quote -}}
{{- end -}}

{{/* Environment shared by every Ray container: where a span or metric comes from,
from the downward API, as OTEL_RESOURCE_ATTRIBUTES (every OpenTelemetry SDK in the pod
reads it; Shardline's processes add service.name from spec.telemetry). */}}
{{- define "shardline.env" -}}
- name: K8S_POD_NAME
  valueFrom: {fieldRef: {fieldPath: metadata.name}}
- name: K8S_NAMESPACE_NAME
  valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
- name: K8S_NODE_NAME
  valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: "k8s.pod.name=$(K8S_POD_NAME),k8s.namespace.name=$(K8S_NAMESPACE_NAME),k8s.node.name=$(K8S_NODE_NAME),service.instance.id=$(K8S_POD_NAME)"
- name: OTEL_SERVICE_NAME
  value: {{ .Values.otel.serviceName | quote }}
{{- end -}}

{{/* Pod-level settings shared by every Ray pod (head, router, engines). */}}
{{- define "shardline.podCommon" -}}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "shardline.image" -}}
image: {{ include "shardline.imageRef" . | quote }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
{{- end -}}

{{/* The image: `image.tag`, or `<appVersion>-cpu`, the tag `make image` builds. */}}
{{- define "shardline.imageRef" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default (printf "%s-cpu" .Chart.AppVersion)) -}}
{{- end -}}

{{/* Names */}}
{{- define "hub.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "hub.fullname" -}}
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

{{- define "hub.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "hub.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "hub.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "hub.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "hub.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hub.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "hub.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "hub.publicUrl" -}}
{{- if .Values.publicUrl -}}
{{- .Values.publicUrl -}}
{{- else if and .Values.ingress.enabled .Values.ingress.hosts -}}
{{- printf "https://%s" (index .Values.ingress.hosts 0).host -}}
{{- end -}}
{{- end -}}

{{/* Settings every hub process reads: plain values, then secret references. Inline (not a
ConfigMap) so the pre-install hook Job, which runs before the release's objects exist, gets them too. */}}
{{- define "hub.env" -}}
- name: HUB_ENV
  value: production
- name: HUB_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: HUB_VAR_DIR
  value: /var/lib/hub
{{- with (include "hub.publicUrl" .) }}
- name: HUB_PUBLIC_URL
  value: {{ . | quote }}
{{- end }}
{{- if .Values.trustedProxies }}
- name: HUB_TRUSTED_PROXIES
  value: {{ join "," .Values.trustedProxies | quote }}
{{- end }}
{{- range $name, $value := .Values.config }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- range $name, $ref := .Values.secrets.env }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $.Values.secrets.existingSecret }}
      key: {{ $ref.key }}
      {{- if $ref.optional }}
      optional: true
      {{- end }}
{{- end }}
{{- end -}}

{{- define "hub.podSecurityContext" -}}
{{ toYaml .Values.podSecurityContext }}
{{- end -}}

{{- define "hub.securityContext" -}}
{{ toYaml .Values.securityContext }}
{{- end -}}

{{/* The read-only root filesystem leaves these writable: /tmp (heartbeat, temp files)
and HUB_VAR_DIR (beat's schedule file). */}}
{{- define "hub.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: var
  mountPath: /var/lib/hub
{{- end -}}

{{- define "hub.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
- name: var
  emptyDir:
    sizeLimit: 64Mi
{{- end -}}

{{/* Pod-level scheduling settings shared by every workload. */}}
{{- define "hub.podScheduling" -}}
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
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Wait until the schema is current (`hub migrate --check` exits 1 while revisions are pending). */}}
{{- define "hub.waitForSchema" -}}
{{- if .Values.migrations.waitForSchema }}
initContainers:
  - name: wait-for-schema
    image: {{ include "hub.image" . }}
    imagePullPolicy: {{ .Values.image.pullPolicy }}
    args: ["migrate", "--check"]
    env:
      {{- include "hub.env" . | nindent 6 }}
    securityContext:
      {{- include "hub.securityContext" . | nindent 6 }}
    resources:
      {{- toYaml .Values.migrations.resources | nindent 6 }}
    volumeMounts:
      {{- include "hub.volumeMounts" . | nindent 6 }}
{{- end }}
{{- end -}}

{{/* Exec probes of the processes without an HTTP port. */}}
{{- define "hub.heartbeatProbes" -}}
startupProbe:
  exec:
    command: ["python", "-m", "hub.heartbeat", {{ .Values.heartbeat.file | quote }}, {{ .Values.heartbeat.maxAgeSeconds | quote }}]
  periodSeconds: 5
  timeoutSeconds: 5
  failureThreshold: 36
livenessProbe:
  exec:
    command: ["python", "-m", "hub.heartbeat", {{ .Values.heartbeat.file | quote }}, {{ .Values.heartbeat.maxAgeSeconds | quote }}]
  periodSeconds: 30
  timeoutSeconds: 5
  failureThreshold: 3
readinessProbe:
  exec:
    command: ["python", "-m", "hub.heartbeat", {{ .Values.heartbeat.file | quote }}, {{ .Values.heartbeat.maxAgeSeconds | quote }}]
  periodSeconds: 15
  timeoutSeconds: 5
  failureThreshold: 2
{{- end -}}

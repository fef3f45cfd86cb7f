{{/*
Names and labels.
*/}}
{{- define "finance.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "finance.fullname" -}}
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

{{/* The name of one component's objects: "<fullname>-<component>". */}}
{{- define "finance.componentName" -}}
{{- printf "%s-%s" (include "finance.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "finance.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. Call with (dict "root" $ "component" "gateway"). */}}
{{- define "finance.labels" -}}
helm.sh/chart: {{ include "finance.chart" .root }}
{{ include "finance.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: finance
{{- end }}

{{/* Selector labels. Call with (dict "root" $ "component" "gateway"). */}}
{{- define "finance.selectorLabels" -}}
app.kubernetes.io/name: {{ include "finance.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
The image of a component. Call with (dict "root" $ "image" .Values.gateway.image).
The tag falls back to .Values.image.tag, then to the chart's appVersion.
*/}}
{{- define "finance.image" -}}
{{- $tag := .image.tag | default .root.Values.image.tag | default .root.Chart.AppVersion -}}
{{- printf "%s:%s" .image.repository $tag }}
{{- end }}

{{/*
Environment variables.
*/}}
{{- define "finance.env.logLevel" -}}
- name: LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
{{- end }}

{{- define "finance.env.database" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ required "database.existingSecret is required: a Secret holding DATABASE_URL" .Values.database.existingSecret }}
      key: {{ .Values.database.urlKey | default "DATABASE_URL" }}
{{- end }}

{{- define "finance.env.kafka" -}}
- name: KAFKA_BROKERS
  value: {{ required "kafka.brokers is required" .Values.kafka.brokers | join "," | quote }}
- name: KAFKA_PARTITIONS
  value: {{ .Values.kafka.partitions | int | quote }}
{{- end }}

{{- define "finance.env.auth" -}}
- name: AUTH_JWT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ required "auth.existingSecret is required: a Secret holding AUTH_JWT_SECRET" .Values.auth.existingSecret }}
      key: {{ .Values.auth.jwtSecretKey | default "AUTH_JWT_SECRET" }}
- name: FINANCE_DEV_MODE
  value: "false"
{{- end }}

{{/* PROCESSOR_URL: the configured URL, or the in-cluster simulator when it is enabled. */}}
{{- define "finance.processorURL" -}}
{{- if .Values.processor.url -}}
{{- .Values.processor.url -}}
{{- else if .Values.processorSim.enabled -}}
{{- printf "http://%s:%d" (include "finance.componentName" (dict "root" . "component" "processor-sim")) (.Values.processorSim.port | int) -}}
{{- else -}}
{{- fail "processor.url is required (or set processorSim.enabled=true in staging)" -}}
{{- end -}}
{{- end }}

{{/*
Pod-level settings shared by every Deployment and the hook Job.
*/}}
{{- define "finance.podSpecCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.serviceAccountName }}
serviceAccountName: {{ . }}
{{- end }}
{{- with .Values.podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Scheduling of a component. Call with the component's values. */}}
{{- define "finance.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Prometheus scrape annotations for a port. Call with the port number. */}}
{{- define "finance.scrapeAnnotations" -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ . | quote }}
prometheus.io/path: /metrics
{{- end }}

{{/* Liveness and readiness probes on /healthz and /readyz of the named port. */}}
{{- define "finance.probes" -}}
livenessProbe:
  httpGet:
    path: /healthz
    port: {{ . }}
  initialDelaySeconds: 5
  periodSeconds: 10
  timeoutSeconds: 2
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /readyz
    port: {{ . }}
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 3
{{- end }}

{{/*
A worker Deployment: one container serving /healthz, /readyz and /metrics on
OPS_ADDR. Call with (dict "root" $ "component" "dispatcher" "values"
.Values.dispatcher "env" (include "..." $)), where env is a rendered list of
EnvVar beyond LOG_LEVEL and OPS_ADDR.
*/}}
{{- define "finance.workerDeployment" -}}
{{- $root := .root }}
{{- $v := .values }}
{{- $ctx := dict "root" $root "component" .component }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "finance.componentName" $ctx }}
  labels:
    {{- include "finance.labels" $ctx | nindent 4 }}
spec:
  replicas: {{ $v.replicaCount }}
  revisionHistoryLimit: 5
  {{- if eq ($v.strategy | default "RollingUpdate") "Recreate" }}
  strategy:
    type: Recreate
  {{- else }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 0
  {{- end }}
  selector:
    matchLabels:
      {{- include "finance.selectorLabels" $ctx | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "finance.selectorLabels" $ctx | nindent 8 }}
      annotations:
        {{- include "finance.scrapeAnnotations" $v.opsPort | nindent 8 }}
        {{- with $root.Values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      {{- include "finance.podSpecCommon" $root | trim | nindent 6 }}
      terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
      containers:
        - name: {{ .component }}
          image: {{ include "finance.image" (dict "root" $root "image" $v.image) | quote }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          ports:
            - name: ops
              containerPort: {{ $v.opsPort }}
              protocol: TCP
          env:
            - name: OPS_ADDR
              value: {{ printf ":%d" ($v.opsPort | int) | quote }}
            {{- include "finance.env.logLevel" $root | nindent 12 }}
            {{- .env | nindent 12 }}
            {{- with $v.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- include "finance.probes" "ops" | nindent 10 }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          {{- with $root.Values.securityContext }}
          securityContext:
            {{- toYaml . | nindent 12 }}
          {{- end }}
      {{- include "finance.scheduling" $v | nindent 6 }}
{{- end }}

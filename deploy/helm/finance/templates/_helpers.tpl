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
{{- include "finance.env.traces" . }}
{{- end }}

{{/*
The traces' settings (docs/operations.md#traces-issue-17), beside LOG_LEVEL
in every process: OTEL_EXPORTER_OTLP_ENDPOINT only when traces.otlpEndpoint
is set (no endpoint: nothing exported, IDs still in the logs).
*/}}
{{- define "finance.env.traces" -}}
{{- with .Values.traces }}
{{- if .otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .otlpEndpoint | quote }}
{{- end }}
- name: OTEL_TRACES_SAMPLER
  value: {{ .sampler | default "parentbased_traceidratio" | quote }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ .samplerArg | default "0.01" | quote }}
{{- end }}
{{- end }}

{{- define "finance.env.database" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ required "database.existingSecret is required: a Secret holding DATABASE_URL" .Values.database.existingSecret }}
      key: {{ .Values.database.urlKey | default "DATABASE_URL" }}
{{- end }}

{{/*
DATABASE_URL of one service: database.serviceUrlKeys.<service> of the
database Secret, its own role's URL (least privilege), else urlKey. Call
with (dict "root" $ "service" "gateway"); service is the key under
serviceUrlKeys.
*/}}
{{- define "finance.env.serviceDatabase" -}}
{{- $keys := .root.Values.database.serviceUrlKeys | default dict }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ required "database.existingSecret is required: a Secret holding DATABASE_URL" .root.Values.database.existingSecret }}
      key: {{ get $keys .service | default .root.Values.database.urlKey | default "DATABASE_URL" }}
{{- end }}

{{- define "finance.env.kafka" -}}
- name: KAFKA_BROKERS
  value: {{ required "kafka.brokers is required" .Values.kafka.brokers | join "," | quote }}
- name: KAFKA_PARTITIONS
  value: {{ .Values.kafka.partitions | int | quote }}
{{- include "finance.env.kafkaSecurity" . }}
{{- end }}

{{/*
KAFKA_SASL_* and KAFKA_TLS_* of an external Kafka (kafka.sasl, kafka.tls):
the SASL credentials from an existing Secret, the CA from an existing Secret
mounted at /etc/finance/kafka-ca (finance.kafka.volumes). Nothing when both
are off.
*/}}
{{- define "finance.env.kafkaSecurity" -}}
{{- $s := .Values.kafka.sasl | default dict }}
{{- $t := .Values.kafka.tls | default dict }}
{{- if $s.enabled }}
{{- if not (has $s.mechanism (list "PLAIN" "SCRAM-SHA-256" "SCRAM-SHA-512")) }}
{{- fail (printf "kafka.sasl.mechanism=%q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512" $s.mechanism) }}
{{- end }}
- name: KAFKA_SASL_MECHANISM
  value: {{ $s.mechanism | quote }}
- name: KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ required "kafka.sasl.existingSecret is required: a Secret holding the SASL username and password" $s.existingSecret }}
      key: {{ $s.usernameKey | default "username" }}
- name: KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $s.existingSecret }}
      key: {{ $s.passwordKey | default "password" }}
{{- end }}
{{- if $t.enabled }}
- name: KAFKA_TLS_ENABLED
  value: "true"
{{- if $t.caSecret }}
- name: KAFKA_TLS_CA_FILE
  value: {{ printf "/etc/finance/kafka-ca/%s" ($t.caKey | default "ca.crt") | quote }}
{{- end }}
{{- with $t.serverName }}
- name: KAFKA_TLS_SERVER_NAME
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* The Kafka CA volume (kafka.tls.caSecret), as a list item; empty without one. */}}
{{- define "finance.kafka.volumes" -}}
{{- $t := .Values.kafka.tls | default dict }}
{{- if and $t.enabled $t.caSecret }}
- name: kafka-ca
  secret:
    secretName: {{ $t.caSecret }}
    items:
      - key: {{ $t.caKey | default "ca.crt" }}
        path: {{ $t.caKey | default "ca.crt" }}
{{- end }}
{{- end }}

{{- define "finance.kafka.volumeMounts" -}}
{{- $t := .Values.kafka.tls | default dict }}
{{- if and $t.enabled $t.caSecret }}
- name: kafka-ca
  mountPath: /etc/finance/kafka-ca
  readOnly: true
{{- end }}
{{- end }}

{{/*
DATABASE_READ_URL: the read DSN (a replica, or a pooler in front of the
replicas), from database.readExistingSecret (default: database.existingSecret)
under database.readUrlKey, for the gateway's read pool (feed pages). Nothing
when readUrlKey is empty: every query then goes to DATABASE_URL, the primary.
*/}}
{{- define "finance.env.databaseRead" -}}
{{- with .Values.database.readUrlKey }}
- name: DATABASE_READ_URL
  valueFrom:
    secretKeyRef:
      name: {{ $.Values.database.readExistingSecret | default $.Values.database.existingSecret }}
      key: {{ . }}
{{- end }}
{{- end }}

{{/*
A container's securityContext: the chart's securityContext, with
runAsNonRoot and the RuntimeDefault seccomp profile always set at the
container level too, so that they hold even when podSecurityContext is
overridden.
*/}}
{{- define "finance.containerSecurityContext" -}}
{{- $sc := deepCopy (.Values.securityContext | default dict) }}
{{- $_ := set $sc "runAsNonRoot" true }}
{{- if not (hasKey $sc "seccompProfile") }}
{{- $_ := set $sc "seccompProfile" (dict "type" "RuntimeDefault") }}
{{- end }}
securityContext:
  {{- toYaml $sc | nindent 2 }}
{{- end }}

{{/*
Volumes of every pod: /tmp as an emptyDir (the root filesystem is read-only)
and the Kafka CA when there is one. Call with the root context and
(dict "kafka" true) when the pod talks to Kafka.
*/}}
{{- define "finance.volumes" -}}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: 64Mi
  {{- if .kafka }}
  {{- with (include "finance.kafka.volumes" .root | trim) }}{{ . | nindent 2 }}{{- end }}
  {{- end }}
{{- end }}

{{- define "finance.volumeMounts" -}}
volumeMounts:
  - name: tmp
    mountPath: /tmp
  {{- if .kafka }}
  {{- with (include "finance.kafka.volumeMounts" .root | trim) }}{{ . | nindent 2 }}{{- end }}
  {{- end }}
{{- end }}

{{- define "finance.env.auth" -}}
- name: AUTH_JWKS_URL
  value: {{ required "auth.jwksURL is required: the identity provider's JWKS (https://...), against which the gateway verifies RS256/ES256 tokens" .Values.auth.jwksURL | quote }}
- name: AUTH_ISSUER
  value: {{ required "auth.issuer is required: the iss of the identity provider's tokens" .Values.auth.issuer | quote }}
- name: AUTH_AUDIENCE
  value: {{ required "auth.audience is required: the aud the identity provider gives tokens for this API" .Values.auth.audience | quote }}
- name: AUTH_CLOCK_SKEW
  value: {{ .Values.auth.clockSkew | default "30s" | quote }}
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
The operator console's settings (gateway.console; services/gateway/console.go).
finance.consoleProcessorURL: GATEWAY_PROCESSOR_URL, gateway.console.processorURL,
else the pipeline's processor while processor.api is "proposed" (the console
looks payments up by key: the proposed API's lookup); empty when the console
is off or the API is as-is.
*/}}
{{- define "finance.consoleProcessorURL" -}}
{{- $c := .Values.gateway.console | default dict -}}
{{- if $c.enabled -}}
{{- if $c.processorURL -}}
{{- $c.processorURL -}}
{{- else if eq .Values.processor.api "proposed" -}}
{{- include "finance.processorURL" . -}}
{{- end -}}
{{- end -}}
{{- end }}

{{/*
GATEWAY_PROCESSOR_STATEMENT_URL: gateway.console.statementURL, else
reconciler.statementURL, else nothing (the gateway's default, the
simulator's /sim/executions) when the console asks the in-cluster simulator,
else "none".
*/}}
{{- define "finance.consoleStatementURL" -}}
{{- $c := .Values.gateway.console | default dict -}}
{{- if $c.statementURL -}}
{{- $c.statementURL -}}
{{- else if .Values.reconciler.statementURL -}}
{{- .Values.reconciler.statementURL -}}
{{- else if not (and (not $c.processorURL) (not .Values.processor.url) .Values.processorSim.enabled) -}}
none
{{- end -}}
{{- end }}

{{/*
The key of GATEWAY_RECONCILE_DATABASE_URL: gateway.console.reconcileUrlKey,
else, while the gateway runs as its own role, the reconciler's
(database.serviceUrlKeys.reconciler, finance_reconciler, a role that may
settle and nothing else; urlKey when it is empty); empty otherwise, or with
the console off.
*/}}
{{- define "finance.consoleReconcileUrlKey" -}}
{{- $c := .Values.gateway.console | default dict -}}
{{- $keys := .Values.database.serviceUrlKeys | default dict -}}
{{- if $c.enabled -}}
{{- if $c.reconcileUrlKey -}}
{{- $c.reconcileUrlKey -}}
{{- else if $keys.gateway -}}
{{- $keys.reconciler | default .Values.database.urlKey | default "DATABASE_URL" -}}
{{- end -}}
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
          {{- with (include "finance.containerSecurityContext" $root | trim) }}{{ . | nindent 10 }}{{- end }}
          {{- include "finance.volumeMounts" (dict "root" $root "kafka" true) | nindent 10 }}
      {{- include "finance.volumes" (dict "root" $root "kafka" true) | nindent 6 }}
      {{- include "finance.scheduling" $v | nindent 6 }}
{{- end }}

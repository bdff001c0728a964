{{/*
Names, labels and the shared pieces of both Deployments.
*/}}

{{- define "barbeque.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Object-name prefix. Truncated to 50 characters so that suffixes such as "-dashboard"
and "-auth-token" keep names within the 63-character limit of labels and Services.
*/}}
{{- define "barbeque.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "barbeque.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "barbeque.selectorLabels" -}}
app.kubernetes.io/name: {{ include "barbeque.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "barbeque.labels" -}}
helm.sh/chart: {{ include "barbeque.chart" . }}
{{ include "barbeque.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: barbeque
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels of the operator's objects; its pods are selected by the component label. */}}
{{- define "barbeque.operator.labels" -}}
{{ include "barbeque.labels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "barbeque.operator.selectorLabels" -}}
{{ include "barbeque.selectorLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "barbeque.dashboard.labels" -}}
{{ include "barbeque.labels" . }}
app.kubernetes.io/component: dashboard
{{- end }}

{{- define "barbeque.dashboard.selectorLabels" -}}
{{ include "barbeque.selectorLabels" . }}
app.kubernetes.io/component: dashboard
{{- end }}

{{- define "barbeque.operator.fullname" -}}
{{ include "barbeque.fullname" . }}-operator
{{- end }}

{{- define "barbeque.dashboard.fullname" -}}
{{ include "barbeque.fullname" . }}-dashboard
{{- end }}

{{- define "barbeque.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "barbeque.operator.fullname" .) .Values.operator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "barbeque.dashboard.serviceAccountName" -}}
{{- if .Values.dashboard.serviceAccount.create }}
{{- default (include "barbeque.dashboard.fullname" .) .Values.dashboard.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.dashboard.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "barbeque.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Name of the Secret holding the Slack token, empty when there is none. */}}
{{- define "barbeque.slackSecretName" -}}
{{- if .Values.slack.token.existingSecret }}
{{- .Values.slack.token.existingSecret }}
{{- else if .Values.slack.token.value }}
{{- include "barbeque.fullname" . }}-slack
{{- end }}
{{- end }}

{{- define "barbeque.dashboard.authSecretName" -}}
{{- default (printf "%s-auth-token" (include "barbeque.fullname" .)) .Values.dashboard.auth.secretName }}
{{- end }}

{{/*
Settings both processes read (config.Settings, env prefix BARBEQUE_). The namespace is
the release namespace, taken from the pod so that it can never disagree with it.
*/}}
{{- define "barbeque.commonEnv" -}}
- name: BARBEQUE_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: BARBEQUE_AWS_REGION
  value: {{ .Values.aws.region | quote }}
{{- with .Values.aws.sqsEndpointUrl }}
- name: BARBEQUE_SQS_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.aws.s3EndpointUrl }}
- name: BARBEQUE_S3_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
- name: BARBEQUE_S3_BUCKET
  value: {{ .Values.s3.bucket | quote }}
- name: BARBEQUE_LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
{{- with .Values.consoleUrl }}
- name: BARBEQUE_CONSOLE_URL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.kubernetesApi.host }}
- name: KUBERNETES_SERVICE_HOST
  value: {{ . | quote }}
{{- end }}
{{- with .Values.kubernetesApi.port }}
- name: KUBERNETES_SERVICE_PORT
  value: {{ . | quote }}
{{- end }}
{{- end }}

{{/* Pod-spec lines shared by both Deployments: the node's network, when asked for. */}}
{{- define "barbeque.podNetwork" -}}
{{- if .Values.hostNetwork }}
hostNetwork: true
dnsPolicy: ClusterFirstWithHostNet
{{- end }}
{{- end }}

{{/* envFrom shared by both containers: the optional static AWS credentials. */}}
{{- define "barbeque.awsEnvFrom" -}}
{{- with .Values.aws.credentialsSecret }}
- secretRef:
    name: {{ . | quote }}
{{- end }}
{{- end }}


{{/*
topologySpreadConstraints of a Deployment's pods: each constraint as given, with a
labelSelector of that Deployment's pods unless it brings its own.
Call with (dict "constraints" <list> "selector" <selector labels as YAML>).
*/}}
{{- define "barbeque.topologySpreadConstraints" -}}
{{- with .constraints -}}
topologySpreadConstraints:
{{- range . }}
{{- $constraint := deepCopy . }}
{{- if not (hasKey $constraint "labelSelector") }}
{{- $_ := set $constraint "labelSelector" (dict "matchLabels" (fromYaml $.selector)) }}
{{- end }}
  - {{ toYaml $constraint | nindent 4 | trim }}
{{- end }}
{{- end }}
{{- end }}

{{/*
A PodDisruptionBudget over one Deployment's pods.
Call with (dict "root" $ "component" "operator"|"dashboard" "budget" <its podDisruptionBudget values>).
*/}}
{{- define "barbeque.podDisruptionBudget" -}}
{{- $root := .root }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include (printf "barbeque.%s.fullname" .component) $root }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include (printf "barbeque.%s.labels" .component) $root | nindent 4 }}
spec:
  maxUnavailable: {{ .budget.maxUnavailable }}
  selector:
    matchLabels:
      {{- include (printf "barbeque.%s.selectorLabels" .component) $root | nindent 6 }}
{{- end }}

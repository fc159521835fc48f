{{/* Names, labels and the shared pod and container security settings. */}}

{{- define "prospector.name" -}}prospector{{- end -}}

{{- define "prospector.fullname" -}}
{{- if contains "prospector" .Release.Name -}}{{ .Release.Name | trunc 40 | trimSuffix "-" }}{{- else -}}{{ printf "%s-prospector" .Release.Name | trunc 40 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "prospector.labels" -}}
app.kubernetes.io/name: prospector
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: call with (dict "root" $ "component" "operator"). */}}
{{- define "prospector.selector" -}}
app.kubernetes.io/name: prospector
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "prospector.image" -}}
{{ printf "%s/%s:%s" .root.Values.image.registry .name (.root.Values.image.tag | default .root.Chart.AppVersion) }}
{{- end -}}

{{/* The restricted Pod Security Standard, for every pod of the chart. */}}
{{- define "prospector.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "prospector.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Which keys of the database Secret become which variables: `DATABASE_URL=url`, or libpq's
     variables from one key per part. The operator passes the same list on to embedder Jobs. */}}
{{- define "prospector.databaseKeys" -}}
{{- $db := .Values.database -}}
{{- if $db.urlKey -}}
DATABASE_URL={{ $db.urlKey }}
{{- else -}}
{{- $pairs := list -}}
{{- range $variable, $part := dict "PGHOST" "host" "PGPORT" "port" "PGUSER" "user" "PGPASSWORD" "password" "PGDATABASE" "database" "PGSSLMODE" "sslmode" -}}
{{- with index $db.keys $part -}}{{- $pairs = append $pairs (printf "%s=%s" $variable .) -}}{{- end -}}
{{- end -}}
{{- join "," $pairs -}}
{{- end -}}
{{- end -}}

{{- define "prospector.databaseEnv" -}}
{{- range splitList "," (include "prospector.databaseKeys" .) }}
{{- $pair := splitList "=" . }}
- name: {{ index $pair 0 }}
  valueFrom:
    secretKeyRef:
      name: {{ $.Values.database.existingSecret }}
      key: {{ index $pair 1 }}
{{- end }}
{{- end -}}

{{- define "prospector.adminTokenSecret" -}}
{{ .Values.apiserver.adminToken.existingSecret | default (printf "%s-admin-token" (include "prospector.fullname" .)) }}
{{- end -}}

//! The operator's Helm chart, checked with Helm built from its Go module: lint, render
//! with the pinned Kubernetes version, values rejected by the schema, an install into the
//! real control plane (pods Ready under the "restricted" Pod Security Standard), and the
//! GitOps manifests in config/ equal to a fresh render.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use e2e::access::{Check, verify};
use e2e::binaries::workspace_binary;
use e2e::cluster::{Cluster, eventually, with_namespace};
use e2e::env::repo_root;
use e2e::helm::{Helm, pinned_kube_version};
use e2e::runner::{Image, RUN_ANNOTATION, Runner, RunnerConfig};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde::Deserialize;
use serde_json::{Value, json};

/// `helm template <args>` of the chart with the pinned Kubernetes version: the documents.
async fn render(helm: &Helm, extra: &[&str]) -> Result<Vec<Value>> {
    let chart = Helm::chart();
    let chart = chart.to_string_lossy();
    let version = pinned_kube_version()?;
    let mut args = vec![
        "template",
        "lco",
        &chart,
        "--namespace",
        "ops",
        "--kube-version",
        &version,
    ];
    args.extend_from_slice(extra);
    let text = helm.ok(&args).await?;
    documents(&text)
}

fn documents(text: &str) -> Result<Vec<Value>> {
    let mut docs = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let value = Value::deserialize(doc).context("helm rendered invalid YAML")?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

fn kinds(docs: &[Value]) -> Vec<String> {
    let mut kinds: Vec<String> = docs
        .iter()
        .map(|d| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap_or("?"),
                d["metadata"]["namespace"].as_str().unwrap_or("-")
            )
        })
        .collect();
    kinds.sort();
    kinds
}

fn find<'a>(docs: &'a [Value], kind: &str) -> Result<&'a Value> {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .with_context(|| format!("no {kind} rendered: {:?}", kinds(docs)))
}

/// Every rule of every Role and ClusterRole rendered.
fn rules(docs: &[Value]) -> Vec<&Value> {
    docs.iter()
        .filter(|d| d["kind"] == "Role" || d["kind"] == "ClusterRole")
        .flat_map(|d| d["rules"].as_array().into_iter().flatten())
        .collect()
}

/// Nothing grants the operator rights cluster-wide: no ClusterRoleBinding, and the only
/// ClusterRoles are the people's (bound per namespace, if at all).
fn operator_rights_are_namespaced(docs: &[Value]) -> bool {
    docs.iter().all(|d| match d["kind"].as_str() {
        Some("ClusterRoleBinding") => false,
        Some("ClusterRole") => d["metadata"]["labels"]["listacompra.app/persona"].is_string(),
        _ => true,
    })
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn chart_lints_strictly_with_every_values_file() -> Result<()> {
    let helm = Helm::new().await?;
    let chart = Helm::chart();
    let chart = chart.to_string_lossy();
    let version = pinned_kube_version()?;
    for values in [
        None,
        Some("helm/staging/values.yaml"),
        Some("helm/production/values.yaml"),
    ] {
        let mut args = vec!["lint", "--strict", &chart, "--kube-version", &version];
        if let Some(values) = values {
            args.extend_from_slice(&["--values", values]);
        }
        let out = helm.run(&args).await?;
        ensure!(
            out.success,
            "helm lint --strict with {values:?} failed:\n{}{}",
            out.stdout,
            out.stderr
        );
        println!("{}", out.stdout);
    }
    Ok(())
}

#[tokio::test]
async fn default_render_is_cluster_wide_hardened_and_least_privilege() -> Result<()> {
    let helm = Helm::new().await?;
    let docs = render(&helm, &[]).await?;
    let expected = [
        "ClusterRole/-",
        "ClusterRole/-",
        "ClusterRole/-",
        "ClusterRole/-",
        "ClusterRole/-",
        "ClusterRoleBinding/-",
        "Deployment/ops",
        "Pod/ops",
        "PodDisruptionBudget/ops",
        "Role/ops",
        "Role/ops",
        "RoleBinding/ops",
        "RoleBinding/ops",
        "Service/ops",
        "ServiceAccount/ops",
        "ServiceAccount/ops",
        "ValidatingAdmissionPolicy/-",
        "ValidatingAdmissionPolicy/-",
        "ValidatingAdmissionPolicyBinding/-",
        "ValidatingAdmissionPolicyBinding/-",
    ];
    ensure!(kinds(&docs) == expected, "rendered {:?}", kinds(&docs));
    // The `helm test` hook: its own ServiceAccount, which may read the leader Lease only,
    // and a pod as hardened as the operator's. None of it is installed before `helm test`.
    let hooks: Vec<&Value> = docs
        .iter()
        .filter(|d| d["metadata"]["annotations"]["helm.sh/hook"] == "test")
        .collect();
    let hook_kinds: Vec<String> = kinds(&hooks.iter().copied().cloned().collect::<Vec<_>>());
    ensure!(
        hook_kinds
            == [
                "Pod/ops",
                "Role/ops",
                "RoleBinding/ops",
                "ServiceAccount/ops"
            ],
        "{hook_kinds:?}"
    );
    let test_pod = hooks
        .iter()
        .find(|d| d["kind"] == "Pod")
        .context("test pod")?;
    ensure!(test_pod["spec"]["serviceAccountName"] == "lco-listacompra-operator-test");
    // None of the operator's selector labels: the metrics Service must never route /readyz
    // to the test pod, nor the PodDisruptionBudget count it.
    let selector = &find(&docs, "Service")?["spec"]["selector"];
    let test_labels = &test_pod["metadata"]["labels"];
    ensure!(
        selector
            .as_object()
            .context("selector")?
            .iter()
            .any(|(k, v)| &test_labels[k] != v),
        "the test pod matches the operator's selector {selector}: {test_labels}"
    );
    ensure!(test_pod["spec"]["restartPolicy"] == "Never");
    let test_sc = &test_pod["spec"]["containers"][0]["securityContext"];
    ensure!(
        test_sc["allowPrivilegeEscalation"] == false && test_sc["readOnlyRootFilesystem"] == true
    );
    let test_role = hooks
        .iter()
        .find(|d| d["kind"] == "Role")
        .context("test role")?;
    ensure!(
        test_role["rules"]
            == json!([{ "apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                        "verbs": ["get"], "resourceNames": ["lco-listacompra-operator"] }]),
        "the test may read the Lease and nothing else: {}",
        test_role["rules"]
    );
    // Without RBAC of the chart's making, no Role for the test either, and no Lease check.
    let no_rbac = render(&helm, &["--set", "rbac.create=false"]).await?;
    let no_rbac_hooks: Vec<Value> = no_rbac
        .iter()
        .filter(|d| d["metadata"]["annotations"]["helm.sh/hook"] == "test")
        .cloned()
        .collect();
    ensure!(
        kinds(&no_rbac_hooks) == ["Pod/ops", "ServiceAccount/ops"],
        "{:?}",
        kinds(&no_rbac_hooks)
    );
    // Four of the ClusterRoles are the people's, bound by nobody unless asked; only the
    // viewer is aggregated (into `view`): edit rights on releases are never handed out
    // with the built-in `edit`.
    let personas: Vec<&str> = docs
        .iter()
        .filter_map(|d| d["metadata"]["labels"]["listacompra.app/persona"].as_str())
        .collect();
    ensure!(
        personas == ["viewer", "approver", "devops", "release-manager"],
        "{personas:?}"
    );
    for doc in &docs {
        let labels = &doc["metadata"]["labels"];
        let view = labels["rbac.authorization.k8s.io/aggregate-to-view"] == "true";
        ensure!(
            view == (labels["listacompra.app/persona"] == "viewer"),
            "only the viewer aggregates into view: {doc}"
        );
        for role in ["edit", "admin"] {
            ensure!(
                labels[format!("rbac.authorization.k8s.io/aggregate-to-{role}").as_str()].is_null(),
                "aggregated into {role}: {doc}"
            );
        }
    }

    let deployment = find(&docs, "Deployment")?;
    let spec = &deployment["spec"];
    ensure!(spec["replicas"] == 2, "two replicas by default");
    let pod = &spec["template"]["spec"];
    ensure!(pod["securityContext"]["runAsNonRoot"] == true);
    ensure!(pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault");
    ensure!(pod["automountServiceAccountToken"] == true);
    let container = &pod["containers"][0];
    let sc = &container["securityContext"];
    ensure!(sc["allowPrivilegeEscalation"] == false, "{sc}");
    ensure!(sc["readOnlyRootFilesystem"] == true, "{sc}");
    ensure!(strings(&sc["capabilities"]["drop"]) == ["ALL"], "{sc}");
    ensure!(container["livenessProbe"]["httpGet"]["path"] == "/healthz");
    ensure!(container["readinessProbe"]["httpGet"]["path"] == "/readyz");
    ensure!(container["image"] == "ghcr.io/listacompra/operator:0.1.0");
    ensure!(container["resources"]["limits"]["memory"] == "256Mi");
    let env: Vec<(String, Value)> = container["env"]
        .as_array()
        .context("env")?
        .iter()
        .map(|e| (e["name"].as_str().unwrap_or("").to_owned(), e.clone()))
        .collect();
    let var = |name: &str| {
        env.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or(Value::Null)
    };
    ensure!(var("LEADER_ELECTION")["value"] == "true");
    ensure!(var("WATCH_NAMESPACES")["value"] == "");
    ensure!(var("METRICS_ADDRESS")["value"] == "0.0.0.0:8080");
    ensure!(var("LEASE_NAME")["value"] == "lco-listacompra-operator");
    ensure!(var("POD_NAME")["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name");
    ensure!(var("POD_NAMESPACE")["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace");
    let sa = find(&docs, "ServiceAccount")?;
    ensure!(sa["automountServiceAccountToken"] == false);
    ensure!(find(&docs, "PodDisruptionBudget")?["spec"]["minAvailable"] == 1);
    ensure!(find(&docs, "Service")?["spec"]["ports"][0]["targetPort"] == "metrics");

    // Secrets: get, and list and watch for rotations (metadata), nothing else; never with
    // secretRotation disabled. Nothing may use wildcards.
    let secret_verbs = |docs: &[Value]| -> Result<Vec<Vec<String>>> {
        let mut found = Vec::new();
        for rule in rules(docs) {
            let verbs = strings(&rule["verbs"]);
            let resources = strings(&rule["resources"]);
            ensure!(
                !verbs.contains(&"*") && !resources.contains(&"*"),
                "wildcard in {rule}"
            );
            if resources.contains(&"secrets") {
                found.push(verbs.iter().map(ToString::to_string).collect());
            }
        }
        Ok(found)
    };
    ensure!(
        secret_verbs(&docs)? == [vec!["get"]],
        "by default, no list or watch"
    );
    ensure!(var("WATCH_SECRETS")["value"] == "false");
    let with = render(&helm, &["--set", "secretRotation.enabled=true"]).await?;
    ensure!(secret_verbs(&with)? == [vec!["get"], vec!["list", "watch"]]);
    ensure!(
        find(&with, "Deployment")?["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .is_some_and(|env| env
                .iter()
                .any(|v| v["name"] == "WATCH_SECRETS" && v["value"] == "true"))
    );
    // The Lease: read and renew only the operator's own Lease.
    let lease_role = find(&docs, "Role")?;
    ensure!(lease_role["metadata"]["name"] == "lco-listacompra-operator-leader-election");
    let named = &lease_role["rules"][1];
    ensure!(strings(&named["resourceNames"]) == ["lco-listacompra-operator"]);
    ensure!(strings(&named["verbs"]) == ["get", "update"]);
    Ok(())
}

#[tokio::test]
async fn watch_namespaces_gives_a_role_per_namespace_and_nothing_cluster_wide() -> Result<()> {
    let helm = Helm::new().await?;
    let docs = render(
        &helm,
        &[
            "--set-json",
            r#"watchNamespaces=["staging","qa"]"#,
            "--set-json",
            r#"rbac.secretNames=["listacompra-health"]"#,
        ],
    )
    .await?;
    let found = kinds(&docs);
    ensure!(
        operator_rights_are_namespaced(&docs),
        "cluster-wide RBAC for the operator rendered: {found:?}"
    );
    for ns in ["staging", "qa"] {
        for kind in ["Role", "RoleBinding"] {
            ensure!(
                found.contains(&format!("{kind}/{ns}")),
                "no {kind} in {ns}: {found:?}"
            );
        }
    }
    let deployment = find(&docs, "Deployment")?;
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .context("env")?;
    ensure!(
        env.iter()
            .any(|e| e["name"] == "WATCH_NAMESPACES" && e["value"] == "staging,qa"),
        "{env:?}"
    );
    // The approval policies check the watched namespaces only (each environment's install
    // has its own roles).
    for binding in docs
        .iter()
        .filter(|d| d["kind"] == "ValidatingAdmissionPolicyBinding")
    {
        let expression =
            &binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"][0];
        ensure!(
            expression["key"] == "kubernetes.io/metadata.name"
                && strings(&expression["values"]) == ["staging", "qa"],
            "{binding}"
        );
    }
    let secret_rule = rules(&docs)
        .into_iter()
        .find(|r| strings(&r["resources"]) == ["secrets"] && strings(&r["verbs"]) == ["get"])
        .context("no rule for secrets")?;
    ensure!(strings(&secret_rule["resourceNames"]) == ["listacompra-health"]);

    // The environments' values files: namespace-scoped, as the runbook's namespaces.
    for (file, ns, replicas) in [
        ("helm/staging/values.yaml", "staging", 1),
        ("helm/production/values.yaml", "production", 2),
    ] {
        let docs = render(&helm, &["--values", file]).await?;
        let found = kinds(&docs);
        ensure!(operator_rights_are_namespaced(&docs), "{file}: {found:?}");
        ensure!(found.contains(&format!("Role/{ns}")), "{file}: {found:?}");
        ensure!(
            find(&docs, "Deployment")?["spec"]["replicas"] == replicas,
            "{file}"
        );
        // Secret rotation on, its list/watch only in the environment's namespace (a Role).
        let env = &find(&docs, "Deployment")?["spec"]["template"]["spec"]["containers"][0]["env"];
        ensure!(
            env.as_array().is_some_and(|env| env
                .iter()
                .any(|v| v["name"] == "WATCH_SECRETS" && v["value"] == "true")),
            "{file}: rotation off"
        );
        let watch = rules(&docs)
            .into_iter()
            .find(|r| {
                strings(&r["resources"]) == ["secrets"] && strings(&r["verbs"]) == ["list", "watch"]
            })
            .with_context(|| format!("{file}: no list/watch of Secrets"))?;
        ensure!(watch.get("resourceNames").is_none(), "{file}: {watch}");
        // The environment's release, off until the release command names a version; then
        // its sample's spec with that version, in the chart's namespace, kept by Helm.
        ensure!(
            find(&docs, "ListaCompraRelease").is_err(),
            "{file}: the release is on"
        );
        let on = render(
            &helm,
            &[
                "--values",
                file,
                "--set",
                "release.enabled=true",
                "--set-string",
                "release.spec.version=1.4.0",
            ],
        )
        .await?;
        let mut sample: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(
            repo_root().join(format!("config/samples/{ns}.yaml")),
        )?)?;
        sample["spec"]["version"] = json!("1.4.0");
        if let Some(image) = sample["spec"]["image"].as_object_mut() {
            image.remove("digest");
            image.remove("tag");
        }
        let release = find(&on, "ListaCompraRelease")?;
        ensure!(
            release["spec"] == sample["spec"],
            "{file}: release.spec differs from config/samples/{ns}.yaml (version and image tag or digest aside); keep them equal"
        );
        ensure!(
            release["metadata"]["name"] == sample["metadata"]["name"]
                && release["metadata"]["namespace"] == "ops"
                && release["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep",
            "{file}: {}",
            release["metadata"]
        );
        // Turned on without a version, it is refused (never the version of the file).
        let out = helm
            .run(&[
                "template",
                "lco",
                &Helm::chart().to_string_lossy(),
                "--values",
                file,
                "--set",
                "release.enabled=true",
            ])
            .await?;
        ensure!(
            !out.success && out.stderr.contains("version"),
            "{file}: {}",
            out.stderr
        );
    }
    // By default the chart renders no release.
    ensure!(
        find(&docs, "ListaCompraRelease").is_err(),
        "{:?}",
        kinds(&docs)
    );
    Ok(())
}

#[tokio::test]
async fn alert_routing_renders_as_alertmanager_configs_where_the_api_exists() -> Result<()> {
    let plain = std::fs::read_to_string(repo_root().join("config/alertmanager/alertmanager.yml"))?;
    let copy = std::fs::read_to_string(
        repo_root().join("helm/listacompra-operator/files/alertmanager.yml"),
    )?;
    ensure!(
        plain == copy,
        "helm/listacompra-operator/files/alertmanager.yml differs from \
         config/alertmanager/alertmanager.yml; copy it over"
    );
    let plain: Value = serde_yaml_ng::from_str(&plain)?;
    let message = &plain["receivers"]
        .as_array()
        .context("receivers")?
        .iter()
        .find(|r| r["name"] == "slack-production")
        .context("slack-production")?["slack_configs"][0];

    let helm = Helm::new().await?;
    let enabled = ["--set", "alerting.alertmanagerConfig.enabled=true"];
    let docs = render(&helm, &enabled).await?;
    ensure!(
        !docs.iter().any(|d| d["kind"] == "AlertmanagerConfig"),
        "rendered without the prometheus-operator API: {:?}",
        kinds(&docs)
    );
    let mut args = enabled.to_vec();
    args.extend([
        "--api-versions",
        "monitoring.coreos.com/v1alpha1/AlertmanagerConfig",
    ]);
    let docs = render(&helm, &args).await?;
    let configs: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == "AlertmanagerConfig")
        .collect();
    ensure!(configs.len() == 2, "{:?}", kinds(&docs));
    let by_namespace = |ns: &str| {
        configs
            .iter()
            .find(|c| c["metadata"]["namespace"] == ns)
            .copied()
            .with_context(|| format!("no AlertmanagerConfig in {ns}"))
    };
    let receiver = |config: &Value, name: &str| -> Option<Value> {
        config["spec"]["receivers"]
            .as_array()?
            .iter()
            .find(|r| r["name"] == name)
            .map(|r| r["slackConfigs"][0].clone())
    };

    let production = by_namespace("production")?;
    let spec = &production["spec"];
    ensure!(spec["route"]["receiver"] == "slack", "{spec}");
    ensure!(
        spec["route"]["groupBy"] == json!(["alertname", "namespace", "release"]),
        "{spec}"
    );
    ensure!(spec["route"]["routes"][0]["receiver"] == "null", "{spec}");
    ensure!(
        spec["route"]["routes"][1]["receiver"] == "slack-critical",
        "{spec}"
    );
    ensure!(spec["route"]["routes"][1]["groupWait"] == "10s", "{spec}");
    ensure!(
        spec["inhibitRules"][0]["sourceMatch"][0]["value"] == "ListaCompraReleaseRollingBack"
            && spec["inhibitRules"][0]["targetMatch"][0]["name"] == "kpi"
            && spec["inhibitRules"][0]["equal"] == json!(["namespace", "release", "version"]),
        "{spec}"
    );
    let slack = receiver(production, "slack").context("slack receiver")?;
    let critical = receiver(production, "slack-critical").context("slack-critical")?;
    ensure!(slack["channel"] == "#alerts-listacompra", "{slack}");
    ensure!(
        slack["apiURL"] == json!({ "name": "listacompra-slack", "key": "url" }),
        "the webhook URL must come from a Secret: {slack}"
    );
    for field in ["title", "text", "color"] {
        ensure!(
            slack[field] == message[field],
            "{field}: {slack} vs {message}"
        );
    }
    ensure!(critical["pretext"] == "<!channel>", "{critical}");
    ensure!(slack.get("pretext").is_none(), "{slack}");

    let staging = by_namespace("staging")?;
    let slack = receiver(staging, "slack").context("staging slack receiver")?;
    ensure!(slack["channel"] == "#alerts-listacompra-staging", "{slack}");
    ensure!(slack["sendResolved"] == false, "{slack}");
    ensure!(
        receiver(staging, "slack-critical").is_none(),
        "staging does not page: {staging}"
    );
    ensure!(staging["spec"]["route"]["groupWait"] == "2m", "{staging}");
    Ok(())
}

#[tokio::test]
async fn bad_values_are_rejected_naming_the_field() -> Result<()> {
    let helm = Helm::new().await?;
    let chart = Helm::chart();
    let chart = chart.to_string_lossy();
    let cases: [(&[&str], &[&str]); 14] = [
        (&["--set", "replicaCount=two"], &["replicaCount"]),
        (&["--set", "replicas=2"], &["replicas"]),
        (&["--set", "image.pullPolicy=Sometimes"], &["pullPolicy"]),
        (
            &["--set-json", r#"watchNamespaces=["Staging"]"#],
            &["watchNamespaces"],
        ),
        (
            &["--set", "metrics.serviceMonitor.interval=often"],
            &["interval"],
        ),
        (
            &["--set", "leaderElection.enabled=false"],
            &["leaderElection.enabled", "replicaCount"],
        ),
        (
            &["--set", "replicaCount=1"],
            &["podDisruptionBudget.minAvailable", "replicaCount"],
        ),
        (
            &[
                "--set",
                "alerting.alertmanagerConfig.environments[0].groupWait=soon",
            ],
            &["groupWait"],
        ),
        (
            &[
                "--set",
                "alerting.alertmanagerConfig.environments[1].slackWebhook.name=Not_A_Secret",
            ],
            &["slackWebhook", "name"],
        ),
        (
            &[
                "--set-json",
                r#"personas.bindings=[{"namespace":"a","persona":"devops","groups":["g"]},{"namespace":"a","persona":"devops","groups":["h"]}]"#,
            ],
            &["personas.bindings[1]", "twice"],
        ),
        (
            &[
                "--set-json",
                r#"personas.bindings=[{"namespace":"a","persona":"admin","groups":["g"]}]"#,
            ],
            &["persona"],
        ),
        (
            &["--set-json", r#"approvals.roles={"QA":["g"]}"#],
            &["approvals", "roles"],
        ),
        // A release to render needs at least what the CRD requires to be useful.
        (&["--set", "release.enabled=true"], &["release", "version"]),
        (
            &["--set", "release.name=Lista_Compra"],
            &["release", "name"],
        ),
    ];
    for (set, names) in cases {
        let mut args = vec!["template", "lco", chart.as_ref()];
        args.extend_from_slice(set);
        let out = helm.run(&args).await?;
        ensure!(!out.success, "helm accepted {set:?}:\n{}", out.stdout);
        for name in names {
            ensure!(
                out.stderr.contains(name),
                "the error for {set:?} does not name {name}:\n{}",
                out.stderr
            );
        }
        println!("{set:?} -> {}", out.stderr.trim());
    }
    Ok(())
}

#[tokio::test]
async fn committed_gitops_manifests_equal_a_fresh_render() -> Result<()> {
    // Builds helm when missing (as the script would), then renders into a temp folder.
    Helm::new().await?;
    let out = std::env::temp_dir().join(format!("lc-manifests-{}", uuid::Uuid::new_v4().simple()));
    let status = tokio::process::Command::new("bash")
        .arg(repo_root().join("e2e/scripts/manifests.sh"))
        .arg(&out)
        .status()
        .await?;
    ensure!(status.success(), "manifests.sh failed");
    let result = compare(&out);
    let _ = std::fs::remove_dir_all(&out);
    result
}

fn compare(fresh: &Path) -> Result<()> {
    let committed = repo_root().join("config");
    for dir in ["rbac", "manager"] {
        let names = |root: &Path| -> Result<Vec<String>> {
            let mut names: Vec<String> = std::fs::read_dir(root.join(dir))
                .with_context(|| format!("reading {}/{dir}", root.display()))?
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".yaml"))
                .collect();
            names.sort();
            Ok(names)
        };
        let (want, have) = (names(fresh)?, names(&committed)?);
        ensure!(
            want == have,
            "config/{dir} holds {have:?} but the chart renders {want:?}; run `make manifests` and commit"
        );
        for name in want {
            let a = std::fs::read_to_string(fresh.join(dir).join(&name))?;
            let b = std::fs::read_to_string(committed.join(dir).join(&name))?;
            ensure!(
                a == b,
                "config/{dir}/{name} is out of date with helm/listacompra-operator; run `make manifests` and commit"
            );
        }
    }
    // And they are valid Kubernetes objects of the kinds expected.
    let mut all = Vec::new();
    for dir in ["rbac", "manager"] {
        for entry in std::fs::read_dir(committed.join(dir))?.flatten() {
            all.extend(documents(&std::fs::read_to_string(entry.path())?)?);
        }
    }
    for kind in [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "Deployment",
        "Service",
    ] {
        find(&all, kind)?;
    }
    Ok(())
}

const INSTALL_TIMEOUT: Duration = Duration::from_secs(120);

/// Makes namespace `ns` enforce the "restricted" Pod Security Standard.
async fn enforce_restricted(client: &kube::Client, ns: &str) -> Result<()> {
    Api::<Namespace>::all(client.clone())
        .patch(
            ns,
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
            }}})),
        )
        .await?;
    Ok(())
}

/// `helm install` into the real control plane, cluster-wide mode, in a namespace that
/// enforces the "restricted" Pod Security Standard: the pods are admitted and Ready, the
/// objects exist, the ServiceAccount can do what the operator needs cluster-wide and no
/// more; `helm uninstall` removes the cluster-scoped objects too.
#[tokio::test]
async fn install_into_the_cluster_runs_ready_pods_under_restricted_pod_security() {
    with_namespace("helm-install", |ctx| async move {
        let ns = ctx.namespace.clone();
        enforce_restricted(&ctx.client, &ns).await?;
        let helm = Helm::with_kubeconfig(ctx.cluster.kubeconfig()).await?;
        let chart = Helm::chart();
        let installed = helm
            .ok(&[
                "install",
                "lco",
                &chart.to_string_lossy(),
                "--namespace",
                &ns,
                "--wait",
                "--timeout",
                "2m",
            ])
            .await;
        let checked = match installed {
            Ok(notes) => {
                println!("{notes}");
                check_install(&ctx.cluster, &ctx.client, &ns).await
            }
            Err(e) => Err(e.into()),
        };
        // Uninstall whatever happened: the ClusterRole and binding outlive the namespace.
        let uninstalled = helm
            .ok(&[
                "uninstall",
                "lco",
                "--namespace",
                &ns,
                "--wait",
                "--timeout",
                "2m",
            ])
            .await;
        checked?;
        uninstalled?;
        let cluster_name = format!("{ns}-lco-listacompra-operator");
        ensure!(
            Api::<ClusterRole>::all(ctx.client.clone())
                .get_opt(&cluster_name)
                .await?
                .is_none(),
            "the ClusterRole survived helm uninstall"
        );
        ensure!(
            Api::<ClusterRoleBinding>::all(ctx.client.clone())
                .get_opt(&cluster_name)
                .await?
                .is_none(),
            "the ClusterRoleBinding survived helm uninstall"
        );
        ensure!(
            Api::<Deployment>::namespaced(ctx.client.clone(), &ns)
                .get_opt("lco-listacompra-operator")
                .await?
                .is_none(),
            "the Deployment survived helm uninstall"
        );
        // The CRD stays (Helm never deletes crds/): releases must not vanish with the chart.
        ensure!(
            Api::<CustomResourceDefinition>::all(ctx.client.clone())
                .get_opt("listacomprareleases.listacompra.app")
                .await?
                .is_some(),
            "the CRD is gone"
        );
        Ok::<(), anyhow::Error>(())
    })
    .await;
}

async fn check_install(cluster: &Cluster, client: &kube::Client, ns: &str) -> Result<()> {
    let name = "lco-listacompra-operator";
    let cluster_name = format!("{ns}-{name}");
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .get(name)
        .await?;
    Api::<Service>::namespaced(client.clone(), ns)
        .get(&format!("{name}-metrics"))
        .await?;
    Api::<PodDisruptionBudget>::namespaced(client.clone(), ns)
        .get(name)
        .await?;
    Api::<Role>::namespaced(client.clone(), ns)
        .get(&format!("{name}-leader-election"))
        .await?;
    Api::<RoleBinding>::namespaced(client.clone(), ns)
        .get(&format!("{name}-leader-election"))
        .await?;
    Api::<ClusterRole>::all(client.clone())
        .get(&cluster_name)
        .await?;
    Api::<ClusterRoleBinding>::all(client.clone())
        .get(&cluster_name)
        .await?;
    Api::<CustomResourceDefinition>::all(client.clone())
        .get("listacomprareleases.listacompra.app")
        .await?;

    let deployments = Api::<Deployment>::namespaced(client.clone(), ns);
    let ready = eventually("2 ready operator replicas", INSTALL_TIMEOUT, || async {
        let d = deployments.get(name).await.ok()?;
        (d.status?.ready_replicas? == 2).then_some(())
    })
    .await;
    if let Err(e) = ready {
        bail!(
            "{e}; deployment: {:#?}",
            deployments.get(name).await?.status
        );
    }
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels("app.kubernetes.io/instance=lco"))
        .await?;
    let ready_pods = pods
        .items
        .iter()
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .count();
    ensure!(
        ready_pods == 2,
        "{ready_pods} of {} pods Ready",
        pods.items.len()
    );

    // What the chart's ServiceAccount may do, cluster-wide mode, asked with its own token.
    let kubeconfig = std::env::temp_dir().join(format!("{ns}-sa.kubeconfig"));
    cluster
        .service_account_kubeconfig(client, ns, name, 600, &kubeconfig)
        .await?;
    let sa = Cluster::client_from(&kubeconfig).await;
    let _ = std::fs::remove_file(&kubeconfig);
    let sa = sa?;
    let group = "listacompra.app";
    let must = [
        Check::new("list", group, "listacomprareleases", ""),
        Check::new("watch", group, "listacomprareleases", ""),
        Check::new("patch", group, "listacomprareleases/status", "default"),
        Check::new("watch", "batch", "jobs", ""),
        Check::new("watch", "apps", "deployments", ""),
        Check::new("create", "batch", "jobs", "default"),
        Check::new("patch", "apps", "deployments", "default"),
        Check::new("get", "", "secrets", "default").named("any-token"),
        Check::new("create", "events.k8s.io", "events", "default"),
        Check::new("update", "coordination.k8s.io", "leases", ns).named(name),
        Check::new("list", "", "pods", "default"),
        Check::new("list", group, "listacompraapprovals", "default"),
        Check::new("watch", group, "listacompraapprovals", ""),
        Check::new("watch", group, "listacomprarestores", ""),
        Check::new("patch", group, "listacomprarestores/status", "default"),
        Check::new("patch", "apps", "statefulsets/scale", "default"),
    ];
    let must_not = [
        // Secret rotation is off by default: Secrets are never listed or watched.
        Check::new("list", "", "secrets", ""),
        Check::new("watch", "", "secrets", "default"),
        Check::new("patch", group, "listacomprareleases", "default"),
        Check::new("delete", group, "listacomprareleases", "default"),
        Check::new(
            "delete",
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            "",
        ),
        Check::new("create", "", "pods", "default"),
        Check::new("watch", "", "pods", "default"),
        Check::new("get", "", "pods/log", "default"),
        Check::new("create", "", "pods/exec", "default"),
        Check::new("delete", "apps", "deployments", "default"),
        Check::new("update", "coordination.k8s.io", "leases", "kube-system")
            .named("kube-controller-manager"),
        Check::new("update", "coordination.k8s.io", "leases", ns).named("another-lease"),
        Check::new(
            "create",
            "rbac.authorization.k8s.io",
            "clusterrolebindings",
            "",
        ),
        Check::new("list", "", "configmaps", ns),
        // Approvals are the approvers' own: the operator never gives or removes one.
        Check::new("create", group, "listacompraapprovals", "default"),
        Check::new("delete", group, "listacompraapprovals", "default"),
        // Restores are people's requests; the database's StatefulSet is theirs but its scale.
        Check::new("create", group, "listacomprarestores", "default"),
        Check::new("patch", "apps", "statefulsets", "default"),
    ];
    verify(&sa, &must, &must_not).await?;
    Ok(())
}

/// The plain manifests, rendered for a test namespace by the same script as config/, apply
/// with kubectl in the order the README gives and run Ready pods.
#[tokio::test]
async fn gitops_manifests_apply_with_kubectl_and_run() {
    with_namespace("gitops", |ctx| async move {
        Helm::new().await?;
        let ns = ctx.namespace.clone();
        let out = std::env::temp_dir().join(format!("{ns}-manifests"));
        let status = tokio::process::Command::new("bash")
            .arg(repo_root().join("e2e/scripts/manifests.sh"))
            .arg(&out)
            .env("LC_MANIFESTS_NAMESPACE", &ns)
            .status()
            .await?;
        ensure!(status.success(), "manifests.sh failed");
        let kubectl = ctx.cluster.bin_dir()?.join("kubectl");
        let kubeconfig = ctx.cluster.kubeconfig().to_owned();
        let run = |args: Vec<String>| {
            let (kubectl, kubeconfig) = (kubectl.clone(), kubeconfig.clone());
            async move {
                let output = tokio::process::Command::new(&kubectl)
                    .arg("--kubeconfig")
                    .arg(&kubeconfig)
                    .args(&args)
                    .output()
                    .await?;
                ensure!(
                    output.status.success(),
                    "kubectl {} failed: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&output.stderr)
                );
                Ok::<String, anyhow::Error>(String::from_utf8_lossy(&output.stdout).into_owned())
            }
        };
        let path = |p: &str| out.join(p).to_string_lossy().into_owned();
        let applied = async {
            run(vec![
                "apply".into(),
                "--server-side".into(),
                "-f".into(),
                path("manager/namespace.yaml"),
            ])
            .await?;
            run(vec![
                "apply".into(),
                "-f".into(),
                path("rbac"),
                "-f".into(),
                path("manager"),
            ])
            .await?;
            let deployments = Api::<Deployment>::namespaced(ctx.client.clone(), &ns);
            eventually("2 ready operator replicas", INSTALL_TIMEOUT, || async {
                let d = deployments.get("listacompra-operator").await.ok()?;
                (d.status?.ready_replicas? == 2).then_some(())
            })
            .await
            .map_err(anyhow::Error::msg)?;
            let labels = Api::<Namespace>::all(ctx.client.clone())
                .get(&ns)
                .await?
                .metadata
                .labels
                .unwrap_or_default();
            ensure!(
                labels
                    .get("pod-security.kubernetes.io/enforce")
                    .map(String::as_str)
                    == Some("restricted"),
                "{labels:?}"
            );
            Ok::<(), anyhow::Error>(())
        }
        .await;
        // The cluster-scoped objects outlive the namespace: delete them whatever happened.
        let deleted = run(vec![
            "delete".into(),
            "--ignore-not-found".into(),
            "-f".into(),
            path("rbac/rbac.yaml"),
            "-f".into(),
            path("rbac/approval-policy.yaml"),
            "-f".into(),
            path("rbac/personas.yaml"),
        ])
        .await;
        let _ = std::fs::remove_dir_all(&out);
        applied?;
        deleted?;
        Ok::<(), anyhow::Error>(())
    })
    .await;
}

/// What Artifact Hub shows of the chart is true: the operator image at the chart's
/// appVersion, the CRDs the chart ships, and examples the real API server accepts (a
/// server-side dry run; the approval as the approver it names, through the approvals policy).
#[tokio::test]
async fn artifact_hub_annotations_describe_the_chart_truthfully() {
    with_namespace("artifacthub", |ctx| async move {
        let chart: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(
            Helm::chart().join("Chart.yaml"),
        )?)?;
        let annotation = |key: &str| -> Result<Vec<Value>> {
            let text = chart["annotations"][key]
                .as_str()
                .with_context(|| format!("annotation {key} missing"))?;
            Ok(serde_yaml_ng::from_str(text)?)
        };
        let app_version = chart["appVersion"].as_str().unwrap_or_default().to_owned();
        for image in annotation("artifacthub.io/images")? {
            let image = image["image"].as_str().unwrap_or_default();
            ensure!(image.ends_with(&format!(":{app_version}")), "{image} is not at appVersion {app_version}");
        }
        let mut shipped: Vec<String> = std::fs::read_dir(Helm::chart().join("crds"))?
            .flatten()
            .map(|e| -> Result<String> {
                let crd: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(e.path())?)?;
                Ok(crd["metadata"]["name"].as_str().unwrap_or_default().to_owned())
            })
            .collect::<Result<_>>()?;
        let mut listed: Vec<String> = annotation("artifacthub.io/crds")?
            .iter()
            .map(|c| c["name"].as_str().unwrap_or_default().to_owned())
            .collect();
        shipped.sort();
        listed.sort();
        ensure!(shipped == listed, "crds/ holds {shipped:?}, the annotation lists {listed:?}");

        let examples = annotation("artifacthub.io/crdsExamples")?;
        let sample: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(
            repo_root().join("config/samples/staging.yaml"),
        )?)?;
        ensure!(examples.first() == Some(&sample), "the release example is not config/samples/staging.yaml");
        e2e::crd::install_crds(&ctx.client).await?;
        let dir = std::env::temp_dir().join(format!("{}-identities", ctx.namespace));
        let approvers =
            e2e::approvals::Approvers::set_up(&ctx.cluster, &ctx.client, &ctx.namespace, &dir).await?;
        for mut example in examples {
            example["metadata"]["namespace"] = json!(ctx.namespace);
            let kind = example["kind"].as_str().unwrap_or_default().to_owned();
            let client = if kind == "ListaCompraApproval" {
                let approver = example["spec"]["approver"].as_str().unwrap_or_default();
                let person = approvers
                    .person(example["spec"]["role"].as_str().unwrap_or_default())
                    .filter(|p| p.user == approver)
                    .with_context(|| format!("the example's approver {approver} is not the test's approver of its role"))?;
                person.client().await?
            } else {
                ctx.client.clone()
            };
            let gvk = kube::core::GroupVersionKind::gvk("listacompra.app", "v1alpha1", &kind);
            let resource = kube::core::ApiResource::from_gvk(&gvk);
            let api: Api<kube::core::DynamicObject> =
                Api::namespaced_with(client, &ctx.namespace, &resource);
            let object: kube::core::DynamicObject = serde_json::from_value(example)?;
            api.create(
                &kube::api::PostParams {
                    dry_run: true,
                    ..Default::default()
                },
                &object,
            )
            .await
            .with_context(|| format!("the API server refused the {kind} example"))?;
        }
        Ok::<(), anyhow::Error>(())
    })
    .await;
}

/// `helm test` on the installed chart, with the operator running for real: the workload
/// runner plays the kubelet for the chart's pods (the operator image is this workspace's
/// `listacompra-operator`, with its ServiceAccount's token), so the hook's
/// `listacompra-operator check` asks the real API server, the real metrics Service and the
/// real Lease. It passes with the operator up, and fails naming the reason once the
/// operator is scaled to zero.
#[tokio::test]
async fn helm_test_checks_the_running_operator() {
    with_namespace("helm-test", |ctx| async move {
        let ns = ctx.namespace.clone();
        enforce_restricted(&ctx.client, &ns).await?;
        let log_dir = std::env::temp_dir().join(format!("{ns}-pods"));
        let runner = Runner::start(
            ctx.client.clone(),
            &ns,
            RunnerConfig {
                api_binary: workspace_binary("listacompra-api")?,
                images: [(
                    "ghcr.io/listacompra/operator".to_owned(),
                    Image::new(workspace_binary("listacompra-operator")?),
                )]
                .into(),
                cluster: Some(ctx.cluster.clone()),
                builds: Default::default(),
                prometheus_targets: None,
                log_dir: log_dir.clone(),
            },
        )?;
        let helm = Helm::with_kubeconfig(ctx.cluster.kubeconfig()).await?;
        let outcome = helm_test_story(&helm, &ctx.client, &ns, &log_dir, &runner).await;
        if outcome.is_err() {
            for event in runner.take_events() {
                println!("runner {:>6.1}s {}", event.at.as_secs_f64(), event.message);
            }
        }
        runner.shutdown().await;
        outcome
    })
    .await;
}

async fn helm_test_story(
    helm: &Helm,
    client: &kube::Client,
    ns: &str,
    log_dir: &Path,
    runner: &Runner,
) -> Result<()> {
    let chart = Helm::chart();
    let runs = format!("{RUN_ANNOTATION}=true").replace('.', "\\.");
    let watch = format!("watchNamespaces={{{ns}}}");
    let installed = helm
        .ok(&[
            "install",
            "lct",
            &chart.to_string_lossy(),
            "--namespace",
            ns,
            "--set",
            &watch,
            "--set-string",
            &format!("podAnnotations.{runs}"),
            "--set-string",
            &format!("tests.podAnnotations.{runs}"),
            "--wait",
            "--timeout",
            "2m",
        ])
        .await;
    let outcome = async {
        installed?;
        ensure!(
            runner.ready_apps().get("listacompra-operator") == Some(&2),
            "two operator processes should serve: {:?}",
            runner.ready_apps()
        );
        let passed = helm.run(&["test", "lct", "--namespace", ns]).await?;
        ensure!(
            passed.success,
            "helm test failed with the operator up: {}{}\ncheck log: {}",
            passed.stdout,
            passed.stderr,
            std::fs::read_to_string(log_dir.join("lct-listacompra-operator-test.log"))
                .unwrap_or_default()
        );
        let log = std::fs::read_to_string(log_dir.join("lct-listacompra-operator-test.log"))?;
        for expected in [
            "ok   the API server serves listacompra.app/v1alpha1 (listacomprareleases, listacompraapprovals)",
            // The runner plays cluster DNS: the Service's name became its local address.
            "ok   the operator answers http://127.0.0.1:",
            &format!("holds Lease {ns}/lct-listacompra-operator and renews it"),
        ] {
            ensure!(log.contains(expected), "the check's log lacks {expected:?}:\n{log}");
        }
        ensure!(!log.contains("FAIL"), "a check failed:\n{log}");

        // No operator: the same test fails, and says why.
        Api::<Deployment>::namespaced(client.clone(), ns)
            .patch(
                "lct-listacompra-operator",
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": { "replicas": 0 } })),
            )
            .await?;
        eventually("no operator process left", INSTALL_TIMEOUT, || async {
            (!runner.ready_apps().contains_key("listacompra-operator")).then_some(())
        })
        .await
        .map_err(anyhow::Error::msg)?;
        let failed = helm.run(&["test", "lct", "--namespace", ns]).await?;
        ensure!(
            !failed.success,
            "helm test passed without an operator: {}",
            failed.stdout
        );
        ensure!(
            failed.stderr.contains("lct-listacompra-operator-test"),
            "helm should name the failed test pod: {}",
            failed.stderr
        );
        let log = std::fs::read_to_string(log_dir.join("lct-listacompra-operator-test.log"))?;
        ensure!(
            log.contains("FAIL no operator answers http://127.0.0.1:")
                && log.contains("/readyz"),
            "the check should say no operator answers:\n{log}"
        );
        Ok(())
    }
    .await;
    let uninstalled = helm
        .ok(&[
            "uninstall",
            "lct",
            "--namespace",
            ns,
            "--wait",
            "--timeout",
            "2m",
        ])
        .await;
    outcome?;
    uninstalled?;
    Ok(())
}

//! The release binaries as the Dockerfile builds them, and the images themselves.
//!
//! - `e2e/scripts/build-static.sh` (the Dockerfile's build stage) produces static binaries
//!   that run, print their version and link no shared library;
//! - each final stage of the Dockerfile, built by buildah (no Docker engine, no registry:
//!   FROM scratch, vfs storage, chroot isolation) from those binaries, gives an image that
//!   runs as 65532, holds no shell, and whose binary runs from the image's own root
//!   filesystem.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow, bail, ensure};
use e2e::env::repo_root;

const VERSION: &str = env!("CARGO_PKG_VERSION");
/// `(Dockerfile target, binary)`.
const IMAGES: [(&str, &str); 2] = [
    ("api", "listacompra-api"),
    ("operator", "listacompra-operator"),
];

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn run(command: &mut Command) -> Result<String> {
    let output = command
        .output()
        .with_context(|| format!("spawn {command:?}"))?;
    let out = text(&output);
    ensure!(output.status.success(), "{command:?} failed:\n{out}");
    Ok(out)
}

/// Runs the build script once per test process and returns its output folder.
fn static_build() -> Result<PathBuf> {
    static OUT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    OUT.get_or_init(|| {
        let script = repo_root().join("e2e/scripts/build-static.sh");
        let output = Command::new("bash")
            .arg(&script)
            .output()
            .map_err(|e| format!("spawn {}: {e}", script.display()))?;
        if !output.status.success() {
            return Err(format!("{} failed:\n{}", script.display(), text(&output)));
        }
        // The script prints the output folder on stdout, and only that.
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .rfind(|l| !l.trim().is_empty())
            .map(|l| PathBuf::from(l.trim()))
            .ok_or_else(|| "build-static.sh printed no output folder".to_owned())
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

#[test]
fn static_binaries_run_and_link_nothing() -> Result<()> {
    let out = static_build()?;
    for (_, bin) in IMAGES {
        let path = out.join(bin);
        let version = run(Command::new(&path).arg("--version"))?;
        ensure!(
            version.trim() == format!("{bin} {VERSION}"),
            "{bin} --version printed {version:?}"
        );
        let help = run(Command::new(&path).arg("--help"))?;
        ensure!(help.contains("Usage:"), "{bin} --help printed {help}");
        // ldd exits non-zero for a static executable and says so.
        let ldd = text(&Command::new("ldd").arg(&path).output()?);
        ensure!(
            ldd.contains("not a dynamic executable") || ldd.contains("statically linked"),
            "ldd {bin} lists shared libraries:\n{ldd}"
        );
        let file = run(Command::new("file").arg("-b").arg(&path))?;
        ensure!(
            file.contains("statically linked") || file.contains("static-pie linked"),
            "file {bin}: {file}"
        );
    }
    let certs = std::fs::metadata(out.join("etc/ssl/certs/ca-certificates.crt"))?;
    ensure!(
        certs.len() > 10_000,
        "the CA bundle is {} bytes",
        certs.len()
    );
    let passwd = std::fs::read_to_string(out.join("etc/passwd"))?;
    ensure!(passwd.contains(":65532:65532:"), "etc/passwd: {passwd}");
    Ok(())
}

/// The lines of the Dockerfile stage `FROM scratch AS <target>`, up to the next `FROM`.
fn stage(dockerfile: &str, target: &str) -> Result<Vec<String>> {
    let header = format!("from scratch as {target}");
    let mut lines = dockerfile
        .lines()
        .skip_while(|l| l.trim().to_lowercase() != header);
    let first = lines
        .next()
        .with_context(|| format!("the Dockerfile has no `FROM scratch AS {target}` stage"))?;
    let mut stage = vec![first.to_owned()];
    stage.extend(
        lines
            .take_while(|l| !l.trim_start().to_lowercase().starts_with("from "))
            .map(str::to_owned),
    );
    Ok(stage)
}

#[test]
fn dockerfile_final_stages_are_scratch_non_root_and_run_nothing() -> Result<()> {
    let dockerfile = std::fs::read_to_string(repo_root().join("Dockerfile"))?;
    ensure!(
        dockerfile.contains("RUN bash e2e/scripts/build-static.sh /out"),
        "the build stage must run e2e/scripts/build-static.sh, the script CI runs"
    );
    for (target, bin) in IMAGES {
        let lines = stage(&dockerfile, target)?;
        let has = |prefix: &str| lines.iter().any(|l| l.trim() == prefix);
        ensure!(
            !lines.iter().any(|l| l.trim_start().starts_with("RUN ")),
            "stage {target} runs commands; a scratch image has no shell"
        );
        ensure!(has("USER 65532:65532"), "stage {target} must run as 65532");
        ensure!(
            has(&format!(r#"ENTRYPOINT ["/usr/local/bin/{bin}"]"#)),
            "stage {target} must start {bin}"
        );
    }
    Ok(())
}

/// A buildah with its own storage under a temporary folder, removed on drop.
struct Buildah {
    root: PathBuf,
}

impl Buildah {
    fn new() -> Result<Self> {
        // test.sh installs buildah; install it here too, so this test runs on its own.
        run(Command::new("bash").arg("-c").arg(format!(
            "source {} && apt_install buildah",
            repo_root().join("e2e/scripts/lib.sh").display()
        )))?;
        let root = std::env::temp_dir().join(format!("listacompra-buildah-{}", std::process::id()));
        std::fs::create_dir_all(&root)?;
        Ok(Self { root })
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("buildah");
        c.arg("--root")
            .arg(self.root.join("storage"))
            .arg("--runroot")
            .arg(self.root.join("run"))
            .arg("--storage-driver")
            .arg("vfs");
        c
    }

    fn run(&self, args: &[&str]) -> Result<String> {
        run(self.cmd().args(args))
    }
}

impl Drop for Buildah {
    fn drop(&mut self) {
        let _ = self.cmd().args(["rm", "--all"]).output();
        let _ = self.cmd().args(["rmi", "--all", "--force"]).output();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Every file below `dir`, relative to it.
fn files(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir)?.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    Ok(out)
}

#[test]
fn images_build_with_buildah_from_the_dockerfile_and_run() -> Result<()> {
    let out = static_build()?;
    let dockerfile = std::fs::read_to_string(repo_root().join("Dockerfile"))?;
    let buildah = Buildah::new()?;
    for (target, bin) in IMAGES {
        // The stage as written, with the build stage's output as the build context.
        let containerfile = buildah.root.join(format!("Containerfile.{target}"));
        let lines: Vec<String> = stage(&dockerfile, target)?
            .iter()
            .map(|l| l.replace("COPY --from=build /out/", "COPY "))
            .collect();
        ensure!(
            !lines.iter().any(|l| l.contains("--from=")),
            "stage {target} copies from somewhere other than /out of the build stage"
        );
        std::fs::write(&containerfile, lines.join("\n") + "\n")?;
        let tag = format!("localhost/listacompra-{target}:e2e");
        buildah.run(&[
            "bud",
            "--isolation",
            "chroot",
            "-f",
            &containerfile.to_string_lossy(),
            "-t",
            &tag,
            &out.to_string_lossy(),
        ])?;

        let inspect: serde_json::Value =
            serde_json::from_str(&buildah.run(&["inspect", "--type", "image", &tag])?)?;
        let config = &inspect["OCIv1"]["config"];
        ensure!(
            config["User"] == "65532:65532",
            "{target}: user {}",
            config["User"]
        );
        ensure!(
            config["Entrypoint"] == serde_json::json!([format!("/usr/local/bin/{bin}")]),
            "{target}: entrypoint {}",
            config["Entrypoint"]
        );

        let container = buildah.run(&["from", &tag])?;
        let container = container.trim();
        let mount = PathBuf::from(buildah.run(&["mount", container])?.trim());
        let content = files(&mount)?;
        let expected = [
            "etc/group".to_owned(),
            "etc/passwd".to_owned(),
            "etc/ssl/certs/ca-certificates.crt".to_owned(),
            format!("usr/local/bin/{bin}"),
        ];
        ensure!(
            content == expected,
            "{target}: the image holds {content:?}, want {expected:?}"
        );
        // The binary, executed straight from the image's root filesystem...
        let direct = run(Command::new(mount.join("usr/local/bin").join(bin)).arg("--version"))?;
        ensure!(direct.trim() == format!("{bin} {VERSION}"), "{direct}");
        // ...and inside the image (chroot into its rootfs, as its user, by name on PATH the
        // way the migration Job calls `listacompra-api migrate`).
        let inside = buildah.run(&[
            "run",
            "--isolation",
            "chroot",
            container,
            "--",
            bin,
            "--version",
        ])?;
        ensure!(inside.trim() == format!("{bin} {VERSION}"), "{inside}");
        // No shell to run anything else.
        let shell = buildah
            .cmd()
            .args([
                "run",
                "--isolation",
                "chroot",
                container,
                "--",
                "/bin/sh",
                "-c",
                "true",
            ])
            .output()?;
        if shell.status.success() {
            bail!("{target}: the image has a shell");
        }
        buildah.run(&["umount", container])?;
    }
    Ok(())
}

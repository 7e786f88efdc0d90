//! Compiles every `.proto` under `agentsec/`, and the Envoy ext_authz
//! subset under `envoy/` (an include root of its own, so that its import
//! paths are upstream's), with tonic's code generator and writes one encoded
//! file descriptor set for gRPC reflection. `protoc` comes from the
//! `protoc-bin-vendored` crate unless `PROTOC` is set.

use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        std::env::set_var("PROTOC", protoc);
    }
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let mut protos = Vec::new();
    collect_protos(&root.join("agentsec"), &mut protos)?;
    collect_protos(&root.join("envoy"), &mut protos)?;
    protos.sort();
    for proto in &protos {
        println!("cargo:rerun-if-changed={}", proto.display());
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("agentsec_descriptor.bin"))
        // `envoy/` first: its files must resolve to their upstream paths
        // (e.g. `envoy/service/auth/v3/external_auth.proto`), not under the
        // crate root.
        .compile_protos(&protos, &[root.join("envoy"), root])?;
    Ok(())
}

fn collect_protos(dir: &Path, found: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_protos(&path, found)?;
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            found.push(path);
        }
    }
    Ok(())
}

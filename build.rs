//! Build script: compiles the relay's XDP steering program (`bpf/relay.bpf.c`)
//! with clang and generates its libbpf-rs skeleton into `OUT_DIR`, where
//! `src/relay/steer.rs` includes it. Needs clang and the kernel UAPI headers
//! (`scripts/install-deps.sh` installs them); `CLANG` picks another clang.

use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

/// The program source; the concern headers beside it are found through `-Ibpf`.
const SOURCE: &str = "bpf/relay.bpf.c";

fn main() {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let object = out_dir.join("relay.bpf.o");
    let skeleton = out_dir.join("relay.skel.rs");

    // Debian and Ubuntu keep `asm/types.h` under the multiarch include dir
    // (/usr/include/x86_64-linux-gnu here), which clang's `-target bpf` does
    // not search (measured: DESIGN.md).
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into());
    let multiarch_include = format!("-I/usr/include/{arch}-linux-gnu");

    let mut builder = SkeletonBuilder::new();
    builder.source(SOURCE).obj(&object).clang_args([
        "-Wall",
        "-Werror",
        "-Ibpf",
        multiarch_include.as_str(),
    ]);
    if let Some(clang) = env::var_os("CLANG") {
        builder.clang(clang);
    }
    if let Err(err) = builder.build_and_generate(&skeleton) {
        panic!(
            "building the XDP program {SOURCE} failed: {err:#}\n\
             It needs clang and the kernel UAPI headers: run scripts/install-deps.sh \
             (or point CLANG at a clang that targets BPF)"
        );
    }

    println!("cargo:rerun-if-changed=bpf");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CLANG");
}

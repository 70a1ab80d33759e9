//! The checked-in C header must be exactly what cbindgen makes of the current source: the Go
//! SDK compiles against the header, so a drifted header would mean Go calls a function with a
//! signature that no longer exists. Regenerate with
//! `HEADWATER_UPDATE_HEADER=1 cargo test -p headwater-ffi --test header`.

use std::path::Path;

#[test]
fn header_matches_the_source() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml parses");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(crate_dir.join("src/lib.rs"))
        .generate()
        .expect("cbindgen reads src/lib.rs");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let generated = String::from_utf8(generated).expect("the header is UTF-8");

    let path = crate_dir.join("include/headwater.h");
    if std::env::var_os("HEADWATER_UPDATE_HEADER").is_some() {
        std::fs::write(&path, &generated).expect("write include/headwater.h");
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    if checked_in != generated {
        let first_difference = checked_in
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| checked_in.lines().count().min(generated.lines().count()));
        panic!(
            "bindings/c/include/headwater.h is out of date with bindings/c/src (first difference at line {}).\n\
             Regenerate it with: HEADWATER_UPDATE_HEADER=1 cargo test -p headwater-ffi --test header",
            first_difference + 1
        );
    }
}

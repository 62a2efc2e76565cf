//! The committed CRDs are exactly what the Rust types generate (regenerate with
//! `cargo run -- crd --output-dir crds`).

use std::collections::BTreeSet;
use std::path::PathBuf;

#[test]
fn committed_crds_match_the_rust_types() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crds");
    let generated = twilio_operator::api::crd_documents();
    for (file, yaml) in &generated {
        let committed = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        assert!(
            committed == *yaml,
            "crds/{file} differs from the Rust types; run `cargo run -- crd --output-dir crds` and commit"
        );
    }
    let committed: BTreeSet<String> = std::fs::read_dir(&dir)
        .expect("crds/ exists")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let expected: BTreeSet<String> = generated.into_iter().map(|(file, _)| file).collect();
    assert_eq!(committed, expected, "crds/ holds exactly the generated files");
}

#[test]
fn crds_carry_short_names_categories_and_printer_columns() {
    for (_, yaml) in twilio_operator::api::crd_documents() {
        let crd: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
        let names = &crd["spec"]["names"];
        assert_eq!(names["categories"][0], "twilio");
        assert!(names["shortNames"][0].as_str().is_some_and(|s| s.starts_with("tw") || s.starts_with("ctw")));
        let version = &crd["spec"]["versions"][0];
        let columns: Vec<&str> = version["additionalPrinterColumns"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert!(columns.contains(&"Ready") && columns.contains(&"Age"), "{columns:?}");
        assert!(version["subresources"]["status"].is_mapping());
    }
}

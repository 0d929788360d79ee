//! Unit tests of batch generation, drawing and scanning.

use super::*;

#[test]
fn size_parses_and_prints() {
    let s: ImageSize = "1024x768".parse().unwrap();
    assert_eq!(s, ImageSize::new(1024, 768));
    assert_eq!(s.to_string(), "1024x768");
    for bad in [
        "",
        "1024",
        "x768",
        "1024x",
        "10 24x768",
        "-1x5",
        "1024x768x3",
        "axb",
    ] {
        let err = bad.parse::<ImageSize>().unwrap_err().to_string();
        assert!(
            err.contains("size") && err.contains(&format!("{bad:?}")),
            "{err}"
        );
    }
}

#[test]
fn plan_spreads_people_and_corrupt_files() {
    let spec = BatchSpec {
        count: 10,
        people: 3,
        corrupt: 4,
        ..BatchSpec::default()
    };
    let files = plan(&spec);
    assert_eq!(files.len(), 14);
    assert_eq!(files[0].name, "IMG_0001.jpg");
    assert!(matches!(files[0].content, Content::Qr { person: 0 }));
    assert!(!matches!(
        files.last().unwrap().content,
        Content::Corrupt(_)
    ));
    let per_person: Vec<usize> = (0..3)
        .map(|p| {
            files.iter()
                .filter(|f| {
                    matches!(f.content, Content::Qr { person } | Content::Photo { person } if person == p)
                })
                .count()
        })
        .collect();
    assert_eq!(per_person, [4, 3, 3]);
    let corrupt = files
        .iter()
        .filter(|f| matches!(f.content, Content::Corrupt(_)))
        .count();
    assert_eq!(corrupt, 4);
    // Many more corrupt files than gaps still keeps them inside.
    let spec = BatchSpec {
        count: 2,
        people: 1,
        corrupt: 5,
        ..BatchSpec::default()
    };
    let files = plan(&spec);
    assert!(matches!(files[0].content, Content::Qr { .. }));
    assert!(matches!(files[6].content, Content::Photo { .. }));
}

#[test]
fn jpeg_completeness() {
    assert!(jpeg_is_complete(&[
        0xff, 0xd8, 0xff, 0xda, 1, 2, 0xff, 0xd9
    ]));
    assert!(!jpeg_is_complete(&[0xff, 0xd8, 0xff, 0xda, 1, 2, 0xff]));
    assert!(!jpeg_is_complete(&[0xff, 0xd8, 0xff, 0xd9, 0xff, 0xda, 1]));
}

#[test]
fn hash_is_lowercase_hex_sha256() {
    assert_eq!(
        content_hash(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

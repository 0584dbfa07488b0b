//! The CRI configuration check for `peerpull doctor`.

use peerpull_store::containerd::{ConfigSource, Setting};
use peerpull_testbed::ContainerdOptions;

use crate::support::Bed;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_check_reads_cri_status_then_the_config_file() {
    let mut bed = Bed::start().await;
    let store = bed.store().await;
    let (version, (major, _)) = bed.version().await;
    let config_path = bed.node.config_path().display().to_string();
    if major >= 2 {
        // containerd 2's CRI status carries no registry or image settings: only the file says.
        let report = store.config_check(None).await;
        assert!(matches!(&report.config_path, Setting::Unknown(why) if why.len() == 2), "{version}: {report:?}");
        let file = bed.node.config_file().to_owned();
        let report = store.config_check(Some(&file)).await;
        let source = ConfigSource::ConfigFile(file);
        assert_eq!(report.config_path, Setting::Known { value: Some(config_path), source: source.clone() });
        assert_eq!(report.discard_unpacked_layers, Setting::Known { value: false, source });
        return;
    }
    let report = store.config_check(None).await;
    assert_eq!(
        report.config_path,
        Setting::Known { value: Some(config_path.clone()), source: ConfigSource::CriStatus }
    );
    assert_eq!(report.discard_unpacked_layers, Setting::Known { value: false, source: ConfigSource::CriStatus });

    // With containerd down the file is the only source.
    bed.node.stop();
    let file = bed.node.config_file().to_owned();
    let report = store.config_check(Some(&file)).await;
    let source = ConfigSource::ConfigFile(file);
    assert_eq!(report.config_path, Setting::Known { value: Some(config_path), source: source.clone() });
    assert_eq!(report.discard_unpacked_layers, Setting::Known { value: false, source });
    let report = store.config_check(None).await;
    assert!(matches!(&report.config_path, Setting::Unknown(why) if why.len() == 2), "{report:?}");
    assert_eq!(report.discard_unpacked_layers.value(), None);

    let other = Bed::start_with(ContainerdOptions { discard_unpacked_layers: true, set_config_path: false }).await;
    let report = other.store().await.config_check(None).await;
    assert_eq!(report.config_path, Setting::Known { value: None, source: ConfigSource::CriStatus });
    assert_eq!(report.discard_unpacked_layers, Setting::Known { value: true, source: ConfigSource::CriStatus });
}

//! `model.json`: everything needed to place a customer in a segment without refitting
//! (features with their transforms and fitted clips, the scaler, the centroids in model
//! units, ids and names), written by the segment stage and read back by a warm start. One
//! type does both, so the file cannot drift from its reader.
//!
//! Fields are declared in alphabetical order: the file has always had its keys sorted,
//! and serde writes them in declaration order.

use std::collections::BTreeMap;

use ndarray::{Array1, Array2};
use segflow_cluster::{FeatureTransform, Preprocessor, PreviousModel, Scaler, Segmentation};
use segflow_pipeline::Segment;
use serde::{Deserialize, Serialize};

use super::settings::{role_name, role_named, scaler_name, scaler_named};

#[derive(Debug, Serialize, Deserialize)]
pub struct ModelFile {
    /// In model units: [centroid row][feature].
    centroids: Vec<Vec<f64>>,
    features: Vec<ModelFeature>,
    /// The segment id of each centroid row; files from before ids were kept have none
    /// (ids are then the rows' order).
    #[serde(default)]
    ids: Option<Vec<u32>>,
    /// The rest describe the fit, for a person reading the file; a warm start does not
    /// need them.
    #[serde(default)]
    inertia: Option<f64>,
    #[serde(default)]
    k: Option<usize>,
    #[serde(default)]
    max_iterations: Option<usize>,
    /// By centroid row.
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    restarts: Option<usize>,
    scaler: ModelScaler,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    sizes: Option<Vec<u64>>,
    #[serde(default)]
    tolerance: Option<f64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ModelFeature {
    log1p: bool,
    name: String,
    role: Option<String>,
    winsorize: Option<ModelClip>,
}

/// The percentiles asked for and the values they came to in the fitted data.
#[derive(Debug, Serialize, Deserialize)]
struct ModelClip {
    high: f64,
    high_percentile: f64,
    low: f64,
    low_percentile: f64,
}

#[derive(Debug, Serialize, Deserialize)]
struct ModelScaler {
    centers: Vec<f64>,
    kind: String,
    scales: Vec<f64>,
}

impl ModelFile {
    /// The model `segmentation` fitted for `segment`, with a name per centroid row.
    pub fn new(segment: &Segment, segmentation: &Segmentation, names: &[String]) -> ModelFile {
        let preprocess = &segmentation.preprocess;
        let features = segment
            .features
            .iter()
            .zip(&preprocess.transforms)
            .zip(&preprocess.clips)
            .map(|((name, transform), clip)| ModelFeature {
                log1p: transform.log1p,
                name: name.clone(),
                role: transform.role.map(|role| role_name(role).to_string()),
                winsorize: transform.winsorize.zip(*clip).map(
                    |((low_percentile, high_percentile), (low, high))| ModelClip {
                        high,
                        high_percentile,
                        low,
                        low_percentile,
                    },
                ),
            })
            .collect();
        ModelFile {
            centroids: segmentation
                .centroids
                .outer_iter()
                .map(|row| row.to_vec())
                .collect(),
            features,
            ids: Some(segmentation.ids.clone()),
            inertia: Some(segmentation.inertia),
            k: Some(segmentation.centroids.nrows()),
            max_iterations: Some(segment.max_iterations),
            names: names.to_vec(),
            restarts: Some(segment.restarts),
            scaler: ModelScaler {
                centers: preprocess.scaler.centers.to_vec(),
                kind: scaler_name(preprocess.scaler.kind).to_string(),
                scales: preprocess.scaler.scales.to_vec(),
            },
            seed: Some(segment.seed),
            sizes: Some(segmentation.sizes.clone()),
            tolerance: Some(segment.tolerance),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a model serialises")
    }

    /// Customers per segment id when the model was fitted (files from before sizes were
    /// recorded have none).
    pub fn sizes_by_id(&self) -> Option<BTreeMap<u32, u64>> {
        let sizes = self.sizes.as_ref()?;
        let ids: Vec<u32> = match &self.ids {
            Some(ids) => ids.clone(),
            None => (0..sizes.len() as u32).collect(),
        };
        (ids.len() == sizes.len()).then(|| ids.into_iter().zip(sizes.iter().copied()).collect())
    }

    /// The model to fit `segment` from, and its names by segment id; fails when the model
    /// was fitted on other features or is not whole.
    pub fn into_previous(
        self,
        segment: &Segment,
    ) -> std::result::Result<(PreviousModel, BTreeMap<u32, String>), String> {
        let names: Vec<&str> = self.features.iter().map(|f| f.name.as_str()).collect();
        if names
            != segment
                .features
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
        {
            return Err(format!(
                "its features are [{}], this run's [{}]: a warm start needs the same features",
                names.join(", "),
                segment.features.join(", ")
            ));
        }
        let d = self.features.len();
        if self.scaler.centers.len() != d
            || self.scaler.scales.len() != d
            || self.centroids.iter().any(|row| row.len() != d)
        {
            return Err("its scaler or centroids do not have one value per feature".to_string());
        }
        let k = self.centroids.len();
        let ids = self.ids.unwrap_or_else(|| (0..k as u32).collect());
        if ids.len() != k {
            return Err("it has not one id per centroid".to_string());
        }
        let kind = scaler_named(&self.scaler.kind)
            .ok_or_else(|| format!("unknown scaler `{}`", self.scaler.kind))?;
        let transforms = self
            .features
            .iter()
            .map(|f| FeatureTransform {
                log1p: f.log1p,
                winsorize: f
                    .winsorize
                    .as_ref()
                    .map(|c| (c.low_percentile, c.high_percentile)),
                role: f.role.as_deref().and_then(role_named),
            })
            .collect();
        let clips = self
            .features
            .iter()
            .map(|f| f.winsorize.as_ref().map(|c| (c.low, c.high)))
            .collect();
        let centroids = Array2::from_shape_vec((k, d), self.centroids.concat())
            .map_err(|error| error.to_string())?;
        let names = ids.iter().copied().zip(self.names).collect();
        Ok((
            PreviousModel {
                preprocess: Preprocessor {
                    transforms,
                    clips,
                    scaler: Scaler {
                        kind,
                        centers: Array1::from(self.scaler.centers),
                        scales: Array1::from(self.scaler.scales),
                    },
                },
                centroids,
                ids,
            },
            names,
        ))
    }
}

#[cfg(test)]
mod tests {
    use ndarray::array;
    use segflow_cluster::{Role, ScalerKind};

    use super::*;

    fn segment() -> Segment {
        Segment {
            contract: None,
            input: "customers".to_string(),
            key: "id".to_string(),
            features: vec!["recency".to_string(), "spend".to_string()],
            transforms: Vec::new(),
            scaler: segflow_pipeline::ScalerKind::Robust,
            names: Default::default(),
            actions: Default::default(),
            units: Default::default(),
            carry: Vec::new(),
            k: 2,
            k_selection: None,
            warm_start: None,
            fixed_model: false,
            quarantine_invalid: false,
            fit_sample: None,
            seed: 7,
            restarts: 3,
            max_iterations: 100,
            tolerance: 1e-4,
            checks: Vec::new(),
        }
    }

    fn segmentation() -> Segmentation {
        Segmentation {
            features: vec!["recency".to_string(), "spend".to_string()],
            preprocess: Preprocessor {
                transforms: vec![
                    FeatureTransform {
                        log1p: false,
                        winsorize: None,
                        role: Some(Role::Recency),
                    },
                    FeatureTransform {
                        log1p: true,
                        winsorize: Some((0.01, 0.99)),
                        role: Some(Role::Monetary),
                    },
                ],
                clips: vec![None, Some((1.5, 900.0))],
                scaler: Scaler {
                    kind: ScalerKind::Robust,
                    centers: array![30.0, 4.2],
                    scales: array![20.0, 1.1],
                },
            },
            centroids: array![[-0.5, 1.0], [1.0, -0.25]],
            ids: vec![1, 0],
            assignments: Vec::new(),
            distances: Vec::new(),
            sizes: vec![5, 3],
            inertia: 2.5,
            iterations: 4,
            converged: true,
        }
    }

    #[test]
    fn a_written_model_reads_back_as_the_model_it_was() {
        let names = ["Champions".to_string(), "Lost".to_string()];
        let json = ModelFile::new(&segment(), &segmentation(), &names).to_json();
        let text = String::from_utf8(json.clone()).unwrap();
        // Keys come out sorted, as model.json always had them.
        let keys: Vec<&str> = text
            .lines()
            .filter(|line| line.starts_with("  \"") && !line.starts_with("   "))
            .map(|line| line.trim().split('"').nth(1).unwrap())
            .collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(keys, sorted);
        assert!(text.contains("\"kind\": \"robust\""), "{text}");
        assert!(text.contains("\"role\": \"monetary\""), "{text}");

        let file: ModelFile = serde_json::from_slice(&json).unwrap();
        let (model, by_id) = file.into_previous(&segment()).unwrap();
        let fitted = segmentation();
        assert_eq!(model.centroids, fitted.centroids);
        assert_eq!(model.ids, fitted.ids);
        assert_eq!(model.preprocess.transforms, fitted.preprocess.transforms);
        assert_eq!(model.preprocess.clips, fitted.preprocess.clips);
        assert_eq!(model.preprocess.scaler.kind, ScalerKind::Robust);
        assert_eq!(
            model.preprocess.scaler.centers,
            fitted.preprocess.scaler.centers
        );
        assert_eq!(by_id.get(&1).map(String::as_str), Some("Champions"));
        assert_eq!(by_id.get(&0).map(String::as_str), Some("Lost"));
    }

    #[test]
    fn a_model_of_other_features_or_an_unknown_scaler_is_refused() {
        let json = ModelFile::new(&segment(), &segmentation(), &[]).to_json();
        let other = Segment {
            features: vec!["recency".to_string(), "frequency".to_string()],
            ..segment()
        };
        let file: ModelFile = serde_json::from_slice(&json).unwrap();
        let error = file.into_previous(&other).unwrap_err();
        assert!(
            error.contains("a warm start needs the same features"),
            "{error}"
        );

        let text = String::from_utf8(json)
            .unwrap()
            .replace("\"robust\"", "\"zscore\"");
        let file: ModelFile = serde_json::from_str(&text).unwrap();
        assert_eq!(
            file.into_previous(&segment()).unwrap_err(),
            "unknown scaler `zscore`"
        );
    }
}

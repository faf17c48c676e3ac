//! Face detection with OpenCV: the Haar cascade of Debian's opencv-data by default, or a DNN
//! detector (YuNet, an ONNX model file) when one is given. With `--device auto` the DNN runs on
//! CUDA when OpenCV offers a CUDA target, else on the CPU. Frames are scaled down to the
//! detection width first (faces stay findable, the work drops with the square of the scale) and
//! the boxes scaled back to frame pixels.

use std::path::{Path, PathBuf};

use opencv::core::{Mat, Ptr, Rect, Size, Vec3b, Vector};
use opencv::prelude::*;
use opencv::{dnn, imgproc, objdetect};

use crate::decode::BgrImage;
use crate::options::Device;
use crate::track::BBox;
use crate::AnalyzeError;

/// Where Debian's opencv-data puts the frontal face cascade.
pub const DEFAULT_CASCADE: &str =
    "/usr/share/opencv4/haarcascades/haarcascade_frontalface_default.xml";

/// One face found in a frame, in frame pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaceBox {
    pub bbox: BBox,
    /// Haar: neighbours that agreed (grouped detections); DNN: the model's score (0..1).
    pub score: f32,
}

enum Model {
    Haar(objdetect::CascadeClassifier),
    Dnn(Ptr<objdetect::FaceDetectorYN>),
}

pub struct FaceDetector {
    model: Model,
    /// "haar (path)" or "dnn (path) on cpu|cuda".
    description: String,
    detect_width: u32,
    small: Mat,
    scratch: Scratch,
}

/// Buffers the detectors reuse from frame to frame.
#[derive(Default)]
struct Scratch {
    gray: Mat,
    faces: Mat,
    rects: Vector<Rect>,
    neighbours: Vector<i32>,
    dnn_size: Option<Size>,
}

fn cuda_available() -> bool {
    dnn::get_available_targets(dnn::Backend::DNN_BACKEND_CUDA).is_ok_and(|t| !t.is_empty())
}

impl FaceDetector {
    /// The Haar cascade at `cascade` (default [`DEFAULT_CASCADE`]) or the DNN `model`.
    pub fn new(
        cascade: Option<&Path>,
        model: Option<&Path>,
        device: Device,
        detect_width: u32,
    ) -> Result<Self, AnalyzeError> {
        let (model, description) = match model {
            Some(path) => {
                if !path.is_file() {
                    return Err(AnalyzeError::Detector(format!(
                        "{}: no such model file",
                        path.display()
                    )));
                }
                let cuda = device == Device::Auto && cuda_available();
                let (backend, target, on) = if cuda {
                    (dnn::DNN_BACKEND_CUDA, dnn::DNN_TARGET_CUDA, "cuda")
                } else {
                    (dnn::DNN_BACKEND_OPENCV, dnn::DNN_TARGET_CPU, "cpu")
                };
                let name = path.to_string_lossy();
                let detector = objdetect::FaceDetectorYN::create(
                    &name,
                    "",
                    Size::new(320, 320),
                    0.7,
                    0.3,
                    500,
                    backend,
                    target,
                )
                .map_err(|e| {
                    AnalyzeError::Detector(format!(
                        "{}: not a usable face model: {}",
                        path.display(),
                        e.message
                    ))
                })?;
                (
                    Model::Dnn(detector),
                    format!("dnn ({}) on {on}", path.display()),
                )
            }
            None => {
                let path: PathBuf = cascade
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| DEFAULT_CASCADE.into());
                if !path.is_file() {
                    return Err(AnalyzeError::Detector(format!(
                        "{}: no such cascade file (Debian's opencv-data ships the default one)",
                        path.display()
                    )));
                }
                let classifier = objdetect::CascadeClassifier::new(&path).map_err(|e| {
                    AnalyzeError::Detector(format!("{}: {}", path.display(), e.message))
                })?;
                if classifier.empty().unwrap_or(true) {
                    return Err(AnalyzeError::Detector(format!(
                        "{}: not a cascade file",
                        path.display()
                    )));
                }
                (
                    Model::Haar(classifier),
                    format!("haar ({})", path.display()),
                )
            }
        };
        Ok(Self {
            model,
            description,
            detect_width,
            small: Mat::default(),
            scratch: Scratch::default(),
        })
    }

    pub fn description(&self) -> &str {
        &self.description
    }

    /// Finds the faces of `image` into `out` (cleared first).
    pub fn detect(&mut self, image: &BgrImage, out: &mut Vec<FaceBox>) -> Result<(), AnalyzeError> {
        out.clear();
        let (width, height) = (image.width as i32, image.height as i32);
        let frame = Mat::new_rows_cols_with_bytes::<Vec3b>(height, width, &image.data)?;
        let scale = if self.detect_width > 0 && image.width > self.detect_width {
            f64::from(self.detect_width) / f64::from(image.width)
        } else {
            1.0
        };
        let back = 1.0 / scale as f32;
        if scale < 1.0 {
            let size = Size::new(
                (f64::from(width) * scale).round().max(1.0) as i32,
                (f64::from(height) * scale).round().max(1.0) as i32,
            );
            imgproc::resize(&frame, &mut self.small, size, 0.0, 0.0, imgproc::INTER_AREA)?;
            run_model(&mut self.model, &mut self.scratch, &self.small, back, out)?;
        } else {
            run_model(&mut self.model, &mut self.scratch, &frame, back, out)?;
        }
        // Hostile or odd models may return boxes outside the picture or not finite: keep only
        // boxes with some area inside it.
        out.retain(|f| f.bbox.clip(image.width, image.height).is_some());
        Ok(())
    }
}

/// Runs the model on `input` (BGR), boxes scaled by `back` into `out`.
fn run_model<M>(
    model: &mut Model,
    scratch: &mut Scratch,
    input: &M,
    back: f32,
    out: &mut Vec<FaceBox>,
) -> Result<(), AnalyzeError>
where
    M: MatTraitConst + opencv::core::ToInputArray,
{
    match model {
        Model::Haar(classifier) => {
            // No global histogram equalisation: on a frame that is mostly background it squeezes
            // a small face into a few grey levels and the cascade misses it.
            imgproc::cvt_color(input, &mut scratch.gray, imgproc::COLOR_BGR2GRAY, 0)?;
            let min_side = (input.cols().min(input.rows()) / 20).max(20);
            classifier.detect_multi_scale2(
                &scratch.gray,
                &mut scratch.rects,
                &mut scratch.neighbours,
                1.1,
                5,
                0,
                Size::new(min_side, min_side),
                Size::default(),
            )?;
            for (rect, n) in scratch.rects.iter().zip(scratch.neighbours.iter()) {
                out.push(FaceBox {
                    bbox: BBox {
                        x: rect.x as f32 * back,
                        y: rect.y as f32 * back,
                        w: rect.width as f32 * back,
                        h: rect.height as f32 * back,
                    },
                    score: n as f32,
                });
            }
        }
        Model::Dnn(detector) => {
            let size = Size::new(input.cols(), input.rows());
            if scratch.dnn_size != Some(size) {
                detector.set_input_size(size)?;
                scratch.dnn_size = Some(size);
            }
            detector.detect(input, &mut scratch.faces)?;
            for row in 0..scratch.faces.rows() {
                let value = |col: i32| -> Result<f32, AnalyzeError> {
                    Ok(*scratch.faces.at_2d::<f32>(row, col)?)
                };
                out.push(FaceBox {
                    bbox: BBox {
                        x: value(0)? * back,
                        y: value(1)? * back,
                        w: value(2)? * back,
                        h: value(3)? * back,
                    },
                    score: value(14)?,
                });
            }
        }
    }
    Ok(())
}

//! The image every face reads, from the moment the listeners open.
//!
//! The register map needs the servers' catalogue, but a connector must be reachable
//! before any server answers (a new user's first question is "why is it not serving?",
//! and the status block, `/api/status` and `/readyz` are where the answer is). So the
//! listeners start with a *placeholder*: an image over an empty map, which holds the
//! status block only (state "starting", no data). When the catalogue arrives the real
//! image is set, once; every request reads whichever is current with one atomic load.

use crate::image::RegisterImage;
use std::sync::{Arc, OnceLock};

#[derive(Debug)]
pub struct ImageSlot {
    /// Served until the catalogue arrives: the status block of a starting connector.
    placeholder: Arc<RegisterImage>,
    /// The image over the real register map, set once.
    real: OnceLock<Arc<RegisterImage>>,
}

impl ImageSlot {
    /// A slot that serves `placeholder` until [`ImageSlot::set`].
    pub fn starting(placeholder: Arc<RegisterImage>) -> ImageSlot {
        ImageSlot {
            placeholder,
            real: OnceLock::new(),
        }
    }

    /// A slot whose image is already the real one (benches, tests).
    pub fn ready(image: Arc<RegisterImage>) -> ImageSlot {
        ImageSlot {
            placeholder: image.clone(),
            real: OnceLock::from(image),
        }
    }

    /// Installs the real image; a second call is ignored (the map never changes while
    /// the process runs: a server whose catalogue differs is not used, see `engine`).
    pub fn set(&self, image: Arc<RegisterImage>) {
        let _ = self.real.set(image);
        // After the set, so a drain that began meanwhile is carried over either way.
        if self.placeholder.is_draining() {
            self.set_draining();
        }
    }

    /// Status register 1 says "draining" in whichever image is served (SIGTERM).
    pub fn set_draining(&self) {
        self.placeholder.set_draining();
        if let Some(real) = self.real.get() {
            real.set_draining();
        }
    }

    /// The image to answer from now.
    pub fn current(&self) -> &Arc<RegisterImage> {
        self.real.get().unwrap_or(&self.placeholder)
    }

    /// The image to answer from now, and whether it is the placeholder (read together,
    /// so a request never takes the real image for the placeholder or the reverse).
    pub fn current_and_starting(&self) -> (&Arc<RegisterImage>, bool) {
        match self.real.get() {
            Some(real) => (real, false),
            None => (&self.placeholder, true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{MapConfig, ModbusConfig};
    use crate::map::RegisterMap;

    fn empty_image() -> Arc<RegisterImage> {
        let map = RegisterMap::build(&[], &ModbusConfig::default(), &MapConfig::default())
            .expect("an empty catalogue maps");
        Arc::new(RegisterImage::new(Arc::new(map)))
    }

    #[test]
    fn the_placeholder_is_served_until_the_real_image_is_set_once() {
        let placeholder = empty_image();
        let slot = ImageSlot::starting(placeholder.clone());
        assert!(Arc::ptr_eq(slot.current(), &placeholder));
        assert!(slot.current_and_starting().1);
        let real = empty_image();
        slot.set(real.clone());
        assert!(Arc::ptr_eq(slot.current(), &real));
        assert!(!slot.current_and_starting().1);
        // A second image never replaces the first.
        slot.set(empty_image());
        assert!(Arc::ptr_eq(slot.current(), &real));
        let ready = ImageSlot::ready(real.clone());
        assert!(!ready.current_and_starting().1);
        assert!(Arc::ptr_eq(ready.current(), &real));
    }
}

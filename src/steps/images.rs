//! Images into the node, before the pods that run them exist. Ours are used as they are or built;
//! the third-party ones (the manifests' and Istio's, as `istioctl manifest generate` names them)
//! are pulled on the host, one after the other in the graph's order (the slowest chains first),
//! from the moment the checks pass: while the cluster is created and while Istio installs, when
//! no pod of an ambient namespace may exist yet for the kubelet to pull for. They go into the node
//! in the graph's loads (`Graph::loads`, `plan::images::next_load`: Istio's first and alone, then
//! each chain's), one `kind load` at a time, each as soon as its images are on the host, so a
//! `down` then `up` downloads nothing the host already has and Istio waits for no other image.
//!
//! Why not the kubelet: it pulls only for pods that exist, and one image at a time by default
//! (kubernetes `pkg/kubelet/images/puller.go`, `serializeImagePulls: true`); no pod of an ambient
//! namespace may exist before Istio is Ready, nor an app's before its database is. The host pulls
//! from the start; the kind config still lets the kubelet pull three at a time for whatever the
//! host could not.
//!
//! Loading: with Docker's classic image store, `kind load docker-image` (kind skips what the node
//! has). With the containerd image store, a built image is an index with a provenance attestation
//! (a pulled one lists every platform) that a plain `docker save` — kind's own — leaves
//! incomplete, so the node's `ctr images import --all-platforms --digests` stops with `content
//! digest sha256:…: not found` (kind#3795, containerd#11344): `docker image save --platform
//! <the daemon's, which kind's node runs on>` (Docker API ≥ 1.48), then `kind load image-archive`
//! (kind PR #4247). podman and nerdctl: kind's `load docker-image` reads the image with `docker`
//! whatever its provider (`docker image inspect`, `docker save` in
//! `pkg/cmd/kind/load/docker-image/docker-image.go`), so the engine saves them (`podman save
//! --multi-image-archive`, `nerdctl save`) and `kind load image-archive` imports the archive into
//! the nodes it finds through the engine. A failed pull or load of a third-party image is a
//! warning: the kubelet pulls it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use crate::engine::{self, Engine, EngineWrite, Kind};
use crate::error::{Error, Result};
use crate::plan::{Graph, Image, ImageSource};
use crate::stack::Stack;
use crate::ui::{Ui, human};

use super::Ctx;
use super::rollout::Prepared;

/// What went wrong, in one line: the last line kubectl or docker printed on stderr.
fn why(e: &Error) -> String {
    match e {
        Error::Command { stderr_tail, status, .. } => {
            stderr_tail.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or(status).trim().to_string()
        }
        other => other.to_string().lines().next().unwrap_or("").to_string(),
    }
}

fn present(image: &str) -> Result<bool> {
    Ok(Engine::for_run().image_present(image).run_unchecked()?.status.success())
}

/// `bookstore up --tiers`' images step: build what is missing, then load all of ours at once;
/// the note says how they were loaded.
pub fn tiers_step(ctx: &Ctx) -> Result<String> {
    let b = &ctx.stack.bootstrap;
    for image in &b.images {
        if !present(&image.image)? {
            let dir = std::env::var(&image.context_env).unwrap_or_default();
            ctx.ui.info(&format!("building {} from {dir}", image.image));
            ctx.engine_write.build(&image.image, &dir).run()?;
        }
    }
    let names: Vec<String> = b.images.iter().map(|i| i.image.clone()).collect();
    Route::detect()?.load(ctx.engine_write, ctx.stack, &names)
}

/// The commands of [`tiers_step`].
pub fn describe_tiers(ctx: &Ctx, lines: &mut Vec<String>) {
    let names: Vec<String> = ctx.stack.bootstrap.images.iter().map(|i| i.image.clone()).collect();
    lines.push("# Our images into the node (each built first when missing)".into());
    Route::describe(ctx.engine_write, ctx.stack, &names, lines);
}

/// How images get into the node on this machine (one `docker info`, and `docker version` under
/// the containerd store; podman and nerdctl save an archive).
#[derive(Clone, Debug)]
pub enum Route {
    /// podman, nerdctl: `<engine> save`, then `kind load image-archive`.
    Archive,
    /// The classic image store: `kind load docker-image`.
    Classic,
    /// The containerd image store: one archive of this platform (`linux/amd64`), when the
    /// daemon can save one platform (API ≥ 1.48, Docker 28); else kind's own load, which works
    /// only for single-manifest images.
    Containerd { platform: String, one_platform: bool },
}

impl Route {
    pub fn detect() -> Result<Route> {
        let engine = Engine::for_run();
        if engine.kind != Kind::Docker {
            return Ok(Route::Archive);
        }
        if !engine::docker::uses_containerd_store(&engine.driver_status().run()?.stdout) {
            return Ok(Route::Classic);
        }
        let version = engine.server_platform().run()?.stdout;
        let (platform, api) = engine::docker::parse_server_platform(&version);
        Ok(Route::Containerd { platform, one_platform: engine::docker::api_at_least(&api, 1, 48) })
    }

    /// Whether an image pulled on the host can be loaded: not from the containerd store without
    /// a one-platform save (a pulled image lists every platform, the host has one).
    pub fn loads_pulled(&self) -> bool {
        !matches!(self, Route::Containerd { one_platform: false, .. })
    }

    /// Load these images (present on the host) into the node; what was done, for the report.
    pub fn load(&self, write: EngineWrite, stack: &Stack, names: &[String]) -> Result<String> {
        let cluster = &stack.cluster.name;
        let platform = match self {
            Route::Classic => {
                write.kind_load_images(names, cluster).run()?;
                return Ok("kind load docker-image".into());
            }
            Route::Archive => None,
            Route::Containerd { platform, one_platform: true } => Some(platform),
            Route::Containerd { one_platform: false, .. } => return self.load_whole(write, stack, names),
        };
        let dir = tempfile::tempdir().map_err(|e| {
            Error::step(format!("cannot create a temp dir: {e}"), "check the temp dir (TMPDIR)")
        })?;
        let archive = dir.path().join("images.tar").display().to_string();
        let Some(platform) = platform else {
            write.save(names, &archive).run()?;
            write.kind_load_archive(&archive, cluster).run()?;
            return Ok(format!("{} save, kind load image-archive", Engine::for_run().program));
        };
        match write.save_platform(names, platform, &archive).run() {
            Ok(_) => {
                write.kind_load_archive(&archive, cluster).run()?;
                Ok(format!("one {platform} archive (containerd image store)"))
            }
            // A docker CLI older than the daemon (no `save --platform`): as without it.
            Err(Error::Command { stderr_tail, .. }) if engine::docker::lacks_platform_save(&stderr_tail) => {
                self.load_whole(write, stack, names)
            }
            Err(e) => Err(e),
        }
    }

    /// kind's own load under the containerd store (Docker 27 and older cannot save one
    /// platform): it works for single-manifest images (built with --provenance=false).
    fn load_whole(&self, write: EngineWrite, stack: &Stack, names: &[String]) -> Result<String> {
        let load = write.kind_load_images(names, &stack.cluster.name);
        match load.run() {
            Ok(_) => Ok("kind load docker-image".into()),
            Err(Error::Command { stderr_tail, .. }) if stderr_tail.contains("content digest") => {
                let rebuild: Vec<String> = stack
                    .bootstrap
                    .images
                    .iter()
                    .filter(|i| names.contains(&i.image))
                    .map(|i| format!("docker build --provenance=false -t {} ${}", i.image, i.context_env))
                    .collect();
                let rebuild = if rebuild.is_empty() {
                    String::new()
                } else {
                    format!(", or rebuild the images without the attestation (`{}`)", rebuild.join(" && "))
                };
                Err(load.failure("failed", &stderr_tail).with_next(format!(
                    "this Docker (API below 1.48) cannot `docker image save --platform`, and kind \
                     cannot import a multi-manifest image from the containerd image store \
                     (kind#3795). Upgrade Docker to 28 or later{rebuild}, or turn off \"Use \
                     containerd for pulling and storing images\" in Docker Desktop; then run \
                     `bookstore up` again"
                )))
            }
            Err(e) => Err(e),
        }
    }

    pub fn describe(write: EngineWrite, stack: &Stack, names: &[String], lines: &mut Vec<String>) {
        let cluster = &stack.cluster.name;
        let engine = Engine::for_run();
        if engine.kind != Kind::Docker {
            lines.push(write.save(names, "<tmp>/images.tar").to_string());
            lines.push(write.kind_load_archive("<tmp>/images.tar", cluster).to_string());
            return;
        }
        lines.push(format!("{}   # the image store", engine.driver_status()));
        lines.push(format!("{}   # the classic store", write.kind_load_images(names, cluster)));
        lines.push(format!("{}   # the containerd store (kind#3795):", engine.server_platform()));
        lines.push(write.save_platform(names, "<os/arch>", "<tmp>/images.tar").to_string());
        lines.push(write.kind_load_archive("<tmp>/images.tar", cluster).to_string());
    }
}

/// Where an image stands on the host.
#[derive(Clone, Debug)]
enum OnHost {
    /// There (as found, built or pulled), with how and how long it took.
    Ready(String),
    /// Could not be had (the warning says why): left to the kubelet.
    Failed(String),
}

#[derive(Default)]
struct Board {
    /// Each image's state on the host, once settled.
    images: BTreeMap<usize, OnHost>,
    /// The images the graph asked into the node, and how to say when each is there.
    wanted: BTreeMap<usize, Prepared>,
    /// The bootstrap is over (the loader dropped): nothing more is asked.
    closed: bool,
    /// `kind load`s under way.
    loading: usize,
    /// One of ours could not be loaded: the bootstrap stops.
    stopped: bool,
}

/// The host side: builds and pulls running on their own threads from the start.
pub struct Host {
    names: Vec<String>,
    board: Arc<(Mutex<Board>, Condvar)>,
}

impl Host {
    /// Start fetching: ours built when missing, the others pulled in `images`' order unless the
    /// host has them. Returns at once.
    pub fn start(ctx: &Ctx, images: &[Image], route: &Route) -> Result<Host> {
        let names: Vec<String> = images.iter().map(|i| i.name.clone()).collect();
        let engine = ctx.engine();
        let listing = engine.image_list().run()?;
        let local: BTreeSet<String> = listing.stdout.lines().map(engine::short_ref).collect();
        let board: Arc<(Mutex<Board>, Condvar)> = Arc::default();
        let post = |board: &Arc<(Mutex<Board>, Condvar)>, i: usize, state: OnHost| {
            let (lock, cv) = &**board;
            lock.lock().unwrap_or_else(|e| e.into_inner()).images.insert(i, state);
            cv.notify_all();
        };
        let mut builds = Vec::new();
        let mut pulls = Vec::new();
        let mut skipped = 0;
        for (i, (image, name)) in images.iter().zip(&names).enumerate() {
            let ours = matches!(image.source, ImageSource::Ours(_));
            if !ours && !route.loads_pulled() {
                post(&board, i, OnHost::Failed("not loadable from this Docker".into()));
                skipped += 1;
            } else if local.contains(&engine::short_ref(name)) {
                post(&board, i, OnHost::Ready("on the host".into()));
            } else if let ImageSource::Ours(k) = image.source {
                let dir = std::env::var(&ctx.stack.bootstrap.images[k].context_env).unwrap_or_default();
                builds.push((i, name.clone(), dir));
            } else {
                pulls.push((i, name.clone()));
            }
        }
        if skipped > 0 {
            ctx.ui.warn(&format!(
                "this Docker (containerd image store, API below 1.48) cannot save one platform of a pulled \
                 image for kind (kind#3795): the node's kubelet pulls the {skipped} third-party images"
            ));
        }
        let (ui, writer) = (ctx.ui.clone(), ctx.engine_write);
        let b = Arc::clone(&board);
        std::thread::spawn(move || {
            for (i, name, dir) in builds {
                let started = Instant::now();
                ui.info(&format!("building {name} from {dir}"));
                let state = match writer.build(&name, &dir).run() {
                    Ok(_) => OnHost::Ready(format!("built {}", human(started.elapsed()))),
                    Err(e) => OnHost::Failed(e.to_string()),
                };
                post(&b, i, state);
            }
        });
        if !pulls.is_empty() {
            let first: Vec<&str> = pulls.iter().take(3).map(|(_, n)| n.as_str()).collect();
            ctx.ui.info(&format!(
                "pulling {} image(s) on the host, one after the other, the slowest chains first ({} …)",
                pulls.len(),
                first.join(", ")
            ));
        }
        let (ui, b) = (ctx.ui.clone(), Arc::clone(&board));
        std::thread::spawn(move || {
            for (i, name) in pulls {
                if crate::wait::interrupted() {
                    return;
                }
                let started = Instant::now();
                let state = match writer.pull(&name).run() {
                    Ok(_) => OnHost::Ready(format!("pulled {}", human(started.elapsed()))),
                    Err(Error::Interrupted) => return,
                    Err(e) => {
                        let why = why(&e);
                        ui.warn(&format!(
                            "could not pull {name} on the host ({why}): the node's kubelet pulls it"
                        ));
                        OnHost::Failed(why)
                    }
                };
                post(&b, i, state);
            }
        });
        Ok(Host { names, board })
    }

    pub fn name(&self, i: usize) -> &str {
        &self.names[i]
    }
}

/// The node side: one thread loading the graph's loads one at a time, in their order, each as
/// soon as its images are asked for and settled on the host.
pub struct Loader {
    board: Arc<(Mutex<Board>, Condvar)>,
}

impl Loader {
    /// Start loading (the node exists). Ours failing is fatal.
    pub fn start(ctx: &Ctx, host: Host, graph: &Graph, route: Route) -> Result<Loader> {
        let ours: BTreeSet<usize> = graph
            .images
            .iter()
            .enumerate()
            .filter(|(_, i)| matches!(i.source, ImageSource::Ours(_)))
            .map(|(k, _)| k)
            .collect();
        let loads = graph.loads();
        let board = Arc::clone(&host.board);
        let (stack, ui, write) = (ctx.stack.clone(), ctx.ui.clone(), ctx.engine_write);
        std::thread::spawn(move || load_loop(write, &stack, &ui, &route, &host, &ours, &loads));
        Ok(Loader { board })
    }

    /// Image `i` into the node; `done` says when.
    pub fn request(&self, i: usize, done: Prepared) {
        let (lock, cv) = &*self.board;
        lock.lock().unwrap_or_else(|e| e.into_inner()).wanted.insert(i, done);
        cv.notify_all();
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        let (lock, cv) = &*self.board;
        lock.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        cv.notify_all();
    }
}

fn load_loop(
    write: EngineWrite<'static>,
    stack: &Stack,
    ui: &Ui,
    route: &Route,
    host: &Host,
    ours: &BTreeSet<usize>,
    loads: &[Vec<usize>],
) {
    let mut begun = vec![false; loads.len()];
    let (lock, cv) = &*host.board;
    std::thread::scope(|s| {
        loop {
            // The next load: the first in order whose images are all asked for and settled,
            // once fewer than LOADS_AT_ONCE are under way.
            let settled: Vec<(usize, OnHost, Prepared)> = {
                let mut board = lock.lock().unwrap_or_else(|e| e.into_inner());
                loop {
                    if crate::wait::interrupted() || board.closed || board.stopped {
                        return;
                    }
                    let ready = |i: usize| board.wanted.contains_key(&i) && board.images.contains_key(&i);
                    let next = crate::plan::images::next_load(loads, &begun, ready);
                    if let Some(l) = next.filter(|_| board.loading < crate::plan::images::LOADS_AT_ONCE) {
                        begun[l] = true;
                        board.loading += 1;
                        break loads[l]
                            .iter()
                            .filter_map(|i| Some((*i, board.images[i].clone(), board.wanted.remove(i)?)))
                            .collect();
                    }
                    if begun.iter().all(|b| *b) {
                        return;
                    }
                    board = cv
                        .wait_timeout(board, std::time::Duration::from_millis(200))
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            };
            s.spawn(move || {
                let go_on = load(write, stack, ui, route, host, ours, settled);
                let mut board = lock.lock().unwrap_or_else(|e| e.into_inner());
                board.loading -= 1;
                board.stopped |= !go_on;
                cv.notify_all();
            });
        }
    });
}

/// One `kind load` of the settled images of a load (those given up on left to the kubelet);
/// false when one of ours failed, which stops the bootstrap.
fn load(
    write: EngineWrite<'static>,
    stack: &Stack,
    ui: &Ui,
    route: &Route,
    host: &Host,
    ours: &BTreeSet<usize>,
    settled: Vec<(usize, OnHost, Prepared)>,
) -> bool {
    let mut batch: Vec<(usize, String, Prepared)> = Vec::new();
    for (i, state, done) in settled {
        match state {
            OnHost::Failed(why) if ours.contains(&i) => {
                done.send(Err(Error::step(
                    format!("building {}: {why}", host.name(i)),
                    "fix the build (the docker build command above, by hand), then run `bookstore up` again",
                )));
                return false;
            }
            OnHost::Failed(_) => done.send(Ok(format!("{}: left to the kubelet", host.name(i)))),
            OnHost::Ready(how) => batch.push((i, how, done)),
        }
    }
    if batch.is_empty() {
        return true;
    }
    let names: Vec<String> = batch.iter().map(|(i, _, _)| host.name(*i).to_string()).collect();
    let started = Instant::now();
    let together = route.load(write, stack, &names);
    let together_ok = together.is_ok();
    let mut lone_error = if names.len() == 1 { together.err() } else { None };
    for (i, how, done) in batch {
        let name = host.name(i);
        // A load of several that failed is tried again for each image alone: one image must
        // not keep the others out.
        let result = if together_ok {
            Ok(())
        } else if let Some(e) = lone_error.take() {
            Err(e)
        } else {
            route.load(write, stack, &[name.to_string()]).map(|_| ())
        };
        match result {
            Ok(()) => {
                done.send(Ok(format!("{name} in the node ({how}, kind load {})", human(started.elapsed()))))
            }
            // Ours cannot come from anywhere else: the bootstrap stops with the load's error.
            Err(e) if ours.contains(&i) => {
                done.send(Err(e));
                return false;
            }
            Err(e) => {
                ui.warn(&format!(
                    "could not load {name} into the node ({}): the node's kubelet pulls it",
                    why(&e)
                ));
                done.send(Ok(format!("{name}: left to the kubelet")));
            }
        }
    }
    true
}

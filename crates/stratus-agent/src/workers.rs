//! One worker task per desired object (volume, backup): it converges its object whenever
//! the object's desired state changes, and once after the agent starts (which repairs
//! only what drifted: converging an object that matches its desired state does nothing).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex as StdMutex};

use tokio::sync::{watch, Notify};
use uuid::Uuid;

use crate::agent::Host;

/// An object the agent converges to a desired state and reports on.
pub trait Resource: Send + Sync + Sized + 'static {
    type Desired: Clone + PartialEq + Send + Sync + 'static;
    type Report: Send;
    fn desired_id(d: &Self::Desired) -> Uuid;
    /// The object `id`, with what was applied to it before (its record), if anything.
    fn open(host: &Host, id: Uuid) -> impl Future<Output = Self> + Send;
    /// Converge to `d`; the outcome shows in the next report.
    fn converge(&self, host: &Host, d: &Self::Desired) -> impl Future<Output = ()> + Send;
    fn report(&self, host: &Host) -> impl Future<Output = Self::Report> + Send;
    /// Deleted: nothing of it is left (its worker can go once it is no longer desired).
    fn is_gone(&self) -> impl Future<Output = bool> + Send;
}

/// One object's worker: the object, the channel carrying its desired state to the task.
pub(crate) struct Slot<O, D> {
    pub obj: Arc<O>,
    pub tx: watch::Sender<Option<D>>,
    pub task: tokio::task::JoinHandle<()>,
    /// In the desired state (the last one dispatched).
    pub desired: bool,
}

/// Forget the slots in `forget` (ending their tasks), then hand every other slot its
/// desired state from `wanted`; slots not wanted are marked so (not touched, not reported).
pub(crate) fn hand_out<O, D: Clone>(
    slots: &mut HashMap<Uuid, Slot<O, D>>,
    forget: &[Uuid],
    wanted: &HashMap<Uuid, &D>,
) {
    for id in forget {
        if let Some(s) = slots.remove(id) {
            s.task.abort();
        }
    }
    for (id, s) in slots.iter_mut() {
        s.desired = match wanted.get(id) {
            Some(d) => {
                s.tx.send_replace(Some((*d).clone()));
                true
            }
            None => false,
        };
    }
}

type ResourceSlot<T> = Slot<T, <T as Resource>::Desired>;

/// The workers of one kind of object.
pub struct Workers<T: Resource> {
    slots: StdMutex<HashMap<Uuid, ResourceSlot<T>>>,
}

impl<T: Resource> Default for Workers<T> {
    fn default() -> Self {
        Workers {
            slots: StdMutex::default(),
        }
    }
}

async fn worker<T: Resource>(
    host: Arc<Host>,
    obj: Arc<T>,
    mut rx: watch::Receiver<Option<T::Desired>>,
    changed: Arc<Notify>,
) {
    let mut last: Option<T::Desired> = None;
    loop {
        let d = rx.borrow_and_update().clone();
        if let Some(d) = d {
            if last.as_ref() != Some(&d) {
                obj.converge(&host, &d).await;
                last = Some(d);
                changed.notify_one();
            }
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

impl<T: Resource> Workers<T> {
    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, ResourceSlot<T>>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hand every object its desired state (starting workers for new ones). Objects no
    /// longer listed are left as they are and not reported; gone ones are forgotten.
    pub async fn dispatch(&self, host: &Arc<Host>, desired: &[T::Desired], changed: &Arc<Notify>) {
        for d in desired {
            let id = T::desired_id(d);
            if self.slots().contains_key(&id) {
                continue;
            }
            let obj = Arc::new(T::open(host, id).await);
            let (tx, rx) = watch::channel(None);
            let task = tokio::spawn(worker(host.clone(), obj.clone(), rx, changed.clone()));
            self.slots().insert(
                id,
                Slot {
                    obj,
                    tx,
                    task,
                    desired: false,
                },
            );
        }
        let wanted: HashMap<Uuid, &T::Desired> =
            desired.iter().map(|d| (T::desired_id(d), d)).collect();
        let idle: Vec<(Uuid, Arc<T>)> = self
            .slots()
            .iter()
            .filter(|(id, _)| !wanted.contains_key(id))
            .map(|(id, s)| (*id, s.obj.clone()))
            .collect();
        let mut forget = Vec::new();
        for (id, obj) in idle {
            if obj.is_gone().await {
                forget.push(id);
            }
        }
        hand_out(&mut self.slots(), &forget, &wanted);
    }

    /// Reports of the objects in the desired state.
    pub async fn reports(&self, host: &Host) -> Vec<T::Report> {
        let objs: Vec<Arc<T>> = self
            .slots()
            .values()
            .filter(|s| s.desired)
            .map(|s| s.obj.clone())
            .collect();
        let mut out = Vec::with_capacity(objs.len());
        for o in objs {
            out.push(o.report(host).await);
        }
        out
    }

    /// End every worker (the agent stops).
    pub async fn stop(&self) {
        let slots: Vec<ResourceSlot<T>> = self.slots().drain().map(|(_, s)| s).collect();
        for s in slots {
            s.task.abort();
            let _ = s.task.await;
        }
    }
}

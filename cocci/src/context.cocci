// Fragments of the rules (see scripts/gen-cocci): the sections a borrow can
// sit in.  scripts/mmaudit_lib/context.py's lock_kind() classifies every
// name (tests/test_context.py checks it).

// Calls that take a lock or enter an atomic section, with the lock as
// their first argument (a trylock or _interruptible one may sit in a
// condition).
//% lock_set(var)
identifier $var = {spin_lock, spin_lock_bh, spin_lock_irq, spin_lock_irqsave,
  spin_lock_nested, spin_lock_irqsave_nested, spin_lock_nest_lock,
  spin_trylock, spin_trylock_bh, spin_trylock_irq, spin_trylock_irqsave,
  raw_spin_lock, raw_spin_lock_bh, raw_spin_lock_irq, raw_spin_lock_irqsave,
  raw_spin_lock_nested, raw_spin_lock_irqsave_nested, raw_spin_trylock,
  raw_spin_trylock_irqsave,
  read_lock, read_lock_bh, read_lock_irq, read_lock_irqsave, read_trylock,
  write_lock, write_lock_bh, write_lock_irq, write_lock_irqsave, write_trylock,
  local_lock, local_lock_irq, local_lock_irqsave, local_irq_save,
  get_cpu_ptr, get_cpu_var,
  mutex_lock, mutex_lock_nested, mutex_lock_interruptible,
  mutex_lock_interruptible_nested, mutex_lock_killable,
  mutex_lock_killable_nested, mutex_lock_io, mutex_trylock,
  rt_mutex_lock, rt_mutex_lock_interruptible, rt_mutex_trylock,
  ww_mutex_lock, ww_mutex_lock_interruptible,
  down, down_interruptible, down_killable, down_timeout, down_trylock,
  down_read, down_read_nested, down_read_interruptible, down_read_killable,
  down_read_trylock, down_write, down_write_nested, down_write_killable,
  down_write_trylock,
  mmap_read_lock, mmap_read_lock_killable, mmap_read_trylock,
  mmap_write_lock, mmap_write_lock_killable, mmap_write_lock_nested};
//% end

// Their releases.
//% unlock_set(var)
identifier $var = {spin_unlock, spin_unlock_bh, spin_unlock_irq,
  spin_unlock_irqrestore, raw_spin_unlock, raw_spin_unlock_bh,
  raw_spin_unlock_irq, raw_spin_unlock_irqrestore,
  read_unlock, read_unlock_bh, read_unlock_irq, read_unlock_irqrestore,
  write_unlock, write_unlock_bh, write_unlock_irq, write_unlock_irqrestore,
  local_unlock, local_unlock_irq, local_unlock_irqrestore, local_irq_restore,
  put_cpu_ptr, put_cpu_var,
  mutex_unlock, rt_mutex_unlock, ww_mutex_unlock, up, up_read, up_write,
  mmap_read_unlock, mmap_write_unlock};
//% end

// Sections without a lock argument.
//% rcu_lock_names()
rcu_read_lock, rcu_read_lock_bh, rcu_read_lock_sched, rcu_read_lock_sched_notrace
//% end

//% preempt_names()
preempt_disable, preempt_disable_notrace, get_cpu
//% end

// An iocb completion: after it the final mmput() could wait in exit_aio()
// for that very iocb.
//% completion(E, A, at=)
\($E->ki_complete$at($A)\|ki_complete$at($A)\|aio_complete$at($A)\)
//% end

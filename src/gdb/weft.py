"""gdb commands for programs that run weft fibers (docs/debugging.md).

    weft fibers          every fiber of every executor: id, parent, state, what it waits on,
                         its context values
    weft bt ID [EXEC]    the backtrace of parked fiber ID (of executor EXEC, when several
                         executors have a fiber ID); more words are passed to `bt` ("full", "-3")

Both work on a live process and on a core file. They read weft's own records, as
executor::fibers() does (src/introspection/introspection.cpp), from the debug information of libweft and of
the program (a build with -g: weft's default, debugoptimized):

- every live stack_pool is on the list weft::detail::g_stack_pools (src/sched/stack_pool.hpp); every
  fiber stack of an executor comes from its pool, and the pool keeps it mapped until the
  executor goes;
- the top 64 bytes of each stack are a fiber_slot (state, id, parent), and right below it is the
  fiber's fiber_record (src/sched/fiber_record.hpp): what it waits on (a wait_label), its context
  (a trie of values, weft/detail/snapshot.hpp) and its Boost.Fiber context, whose saved
  fcontext is where a parked fiber's registers are.

A parked fiber was switched away from inside Boost.Context's jump_fcontext/ontop_fcontext
(x86_64 System V), which left this frame at the saved stack pointer:
    +0x00 mxcsr, x87 control word   +0x10 r12  +0x18 r13  +0x20 r14  +0x28 r15
    +0x30 rbx  +0x38 rbp  +0x40 return address; the caller's stack pointer is +0x48.
`weft bt` writes those registers into the selected thread, runs `bt` and puts the thread's own
registers back. A core file's registers cannot be written: there a frame unwinder says that
the selected thread's innermost frame was called by the fiber's, and the fiber's frames are
shown numbered from #0.
"""
import re

import gdb
import gdb.unwinder

SLOT_BYTES = 64  # sizeof(fiber_slot)
STATES = {0: "free", 1: "ready", 2: "running", 3: "suspended"}
# What jump_fcontext/ontop_fcontext saved, as offsets from the saved stack pointer.
SAVED = (("r12", 0x10), ("r13", 0x18), ("r14", 0x20), ("r15", 0x28), ("rbx", 0x30),
         ("rbp", 0x38), ("rip", 0x40))
FRAME_BYTES = 0x48


class WeftError(gdb.GdbError):
    pass


def lookup_type(name):
    try:
        return gdb.lookup_type(name)
    except gdb.error as e:
        raise WeftError(f"weft: no debug information for {name} (build weft with -g): {e}")


def u64(address):
    """The 8-byte word at address."""
    data = gdb.selected_inferior().read_memory(address, 8)
    return int.from_bytes(bytes(data), "little")


def std_string(v):
    """The text of a std::string (libstdc++, the C++11 ABI)."""
    length = int(v["_M_string_length"])
    if length == 0:
        return ""
    if length > 4096:
        length = 4096
    data = gdb.selected_inferior().read_memory(int(v["_M_dataplus"]["_M_p"]), length)
    return bytes(data).decode("utf-8", "replace")


def quoted(text):
    """text as executor::dump() writes a value: as is when it reads as one word."""
    if text and not any(c in ' "\\' or ord(c) < 0x20 for c in text):
        return text
    out = []
    for c in text:
        if c in '"\\':
            out.append("\\" + c)
        elif c == "\n":
            out.append("\\n")
        elif ord(c) < 0x20:
            out.append(f"\\x{ord(c):02x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def vector_items(v):
    """The elements of a std::vector, as values."""
    start = v["_M_impl"]["_M_start"]
    count = int(v["_M_impl"]["_M_finish"] - start)
    return [(start + i).dereference() for i in range(count)]


def deque_item(d, i):
    """Element i of a std::deque (libstdc++: 512-byte buffers, or one element each)."""
    start = d["_M_impl"]["_M_start"]
    elem = start["_M_cur"].dereference().type
    per_buffer = 512 // elem.sizeof if elem.sizeof < 512 else 1
    at = i + int(start["_M_cur"] - start["_M_first"])
    buffer = (start["_M_node"] + at // per_buffer).dereference()
    return (buffer + at % per_buffer).dereference()


def deque_size(d):
    start, finish = d["_M_impl"]["_M_start"], d["_M_impl"]["_M_finish"]
    elem = start["_M_cur"].dereference().type
    per_buffer = 512 // elem.sizeof if elem.sizeof < 512 else 1
    nodes = int(finish["_M_node"] - start["_M_node"])
    return (per_buffer * (nodes - 1 if nodes else 0) + int(finish["_M_cur"] - finish["_M_first"])
            + int(start["_M_last"] - start["_M_cur"]))


# --- executors and their fibers ---------------------------------------------------------------

class Fiber:
    def __init__(self, executor, top, slot, record, stride):
        self.executor = executor
        self.top = top  # the stack's highest address
        self.bottom = top - stride  # guard region included
        self.id = int(slot["id"])
        self.parent = int(slot["parent"])
        self.state = STATES.get(int(slot["state"]), "state %d" % int(slot["state"]))
        self.record = record


def executor_name(pool_address):
    """The name of the executor whose pool holds the stack_pool at pool_address."""
    try:
        pool = lookup_type("weft::detail::pool")
        offset = next(f.bitpos // 8 for f in pool.fields() if f.name == "stacks")
        p = gdb.Value(pool_address - offset).cast(pool.pointer()).dereference()
        return std_string(p["options_"]["name"])
    except (gdb.error, gdb.MemoryError, StopIteration, WeftError):
        return "?"


def stack_pools():
    try:
        head = gdb.parse_and_eval("weft::detail::g_stack_pools")
    except gdb.error as e:
        raise WeftError("weft: weft::detail::g_stack_pools not found: is libweft loaded, with "
                        f"debug information? ({e})")
    while int(head) != 0:
        yield head.dereference()
        head = head.dereference()["debug_next_"]


def executors():
    """[(name, [Fiber...])] of every live executor, fibers by id."""
    slot_type = lookup_type("weft::detail::fiber_slot")
    record_type = lookup_type("weft::detail::fiber_record")
    record_bytes = (record_type.sizeof + 63) // 64 * 64
    result = []
    for sp in stack_pools():
        name = executor_name(int(sp.address))
        stride = int(sp["stride_"])
        slabs = vector_items(sp["slabs_"])
        fibers = []
        for n, slab in enumerate(slabs):
            base = int(slab["base"])
            size = int(slab["bytes"])
            if n == len(slabs) - 1:  # the newest slab is carved up to next_
                size = int(sp["next_"]) - base
            for top in range(base + stride, base + size + 1, stride):
                try:
                    slot = gdb.Value(top - SLOT_BYTES).cast(slot_type.pointer()).dereference()
                    if int(slot["state"]) == 0 or int(slot["id"]) == 0:
                        continue  # free (or its pages were given back, or never dumped)
                except gdb.MemoryError:
                    continue
                record = gdb.Value(top - SLOT_BYTES - record_bytes).cast(record_type.pointer())
                fibers.append(Fiber(name, top, slot, record, stride))
        fibers.sort(key=lambda f: f.id)
        result.append((name, fibers))
    result.reverse()  # the list is newest first
    return result


def describe_wait(record):
    """What a parked fiber waits on, as src/sync/wait.cpp's describe() says it."""
    label = record["waiting_on"]
    if int(label) == 0:
        return ""
    label = label.dereference()
    out = label["kind"].string() if int(label["kind"]) != 0 else "wait"
    if int(label["name"]) != 0:
        name = std_string(label["name"].dereference())
        if name:
            out += " " + name
    if int(label["op"]) != 0:
        out += ": " + label["op"].string()
    cases = int(label["cases"])
    if cases != 0:
        out += " (%d %s)" % (cases, "case" if cases == 1 else "cases")
    return out


# --- context values ---------------------------------------------------------------------------

_registry = None


def var_registry():
    """The deque of var_entry {name, print} of src/context/var_registry.cpp, indexed by slot."""
    global _registry
    if _registry is None:
        # The function's static (debug information), or else its linker symbol.
        for expr in ("'weft::detail::(anonymous namespace)::the_registry'::r",
                     "*(weft::detail::(anonymous namespace)::registry**)"
                     "&'weft::detail::(anonymous namespace)::the_registry()::r'"):
            try:
                _registry = gdb.parse_and_eval(expr)
                break
            except gdb.error:
                continue
        if _registry is None:
            raise WeftError("weft: the context_var registry was not found")
    if int(_registry) == 0:
        return None
    return _registry.dereference()["vars"]


_value_types = {}


def value_type(printer):
    """The type T of a context_var, from its printer weft::detail::print_value<T>."""
    address = int(printer)
    if address in _value_types:
        return _value_types[address]
    t = None
    try:
        name = gdb.block_for_pc(address).function.name
    except (RuntimeError, AttributeError):
        name = ""
    if not name:
        name = gdb.execute("info symbol %d" % address, to_string=True)
    start = name.find("print_value<")
    if start >= 0:
        depth, at = 0, start + len("print_value")
        for i in range(at, len(name)):
            depth += {"<": 1, ">": -1}.get(name[i], 0)
            if depth == 0:
                try:
                    t = gdb.lookup_type(name[at + 1:i].strip())
                except gdb.error:
                    t = None
                break
    _value_types[address] = t
    return t


def format_value(v):
    """v as text when it is simply printable (numbers, strings, enums, pointers), else None."""
    t = v.type.strip_typedefs()
    if t.code in (gdb.TYPE_CODE_INT, gdb.TYPE_CODE_FLT, gdb.TYPE_CODE_BOOL,
                  gdb.TYPE_CODE_ENUM, gdb.TYPE_CODE_CHAR):
        return v.format_string(raw=True)
    if t.code == gdb.TYPE_CODE_PTR:
        return hex(int(v))
    name = t.name or ""
    if name.startswith("std::__cxx11::basic_string<char,"):
        return std_string(v)
    if name.startswith("std::basic_string_view<char,"):
        length = min(int(v["_M_len"]), 4096)
        data = gdb.selected_inferior().read_memory(int(v["_M_str"]), length) if length else b""
        return bytes(data).decode("utf-8", "replace")
    return None


def context_values(record):
    """[(name, text)] of every context_var bound in the fiber's current context."""
    root = record["current"]["root"]
    empty = gdb.parse_and_eval("&weft::detail::empty_node")
    if int(root) == 0 or int(root) == int(empty):
        return []
    cells = []  # (slot, address of the value's storage, in place)

    def walk(node, prefix, depth):
        node = node.dereference()
        used, in_place = int(node["used"]), int(node["in_place"])
        entries = int(node["entries"].address)
        for i in range(32):
            if not used >> i & 1 or depth > 7:
                continue
            slot = prefix << 5 | i
            if int(node["height"]) != 0:
                walk(gdb.Value(u64(entries + 8 * i)).cast(root.type), slot, depth + 1)
            elif in_place >> i & 1:
                cells.append((slot, entries + 8 * i, True))
            else:
                cells.append((slot, u64(entries + 8 * i), False))

    walk(root, 0, 0)
    vars_ = var_registry()
    known = deque_size(vars_) if vars_ is not None else 0
    out = []
    for slot, where, in_place in cells:
        if slot >= known:
            out.append(("slot %d" % slot, "<unknown>"))
            continue
        entry = deque_item(vars_, slot)
        name = std_string(entry["name"])
        text = None
        t = value_type(entry["print"])
        if t is not None:
            try:
                if not in_place:  # value_cell<T>: the cell header, then the value
                    where += (16 + t.alignof - 1) // t.alignof * t.alignof
                text = format_value(gdb.Value(where).cast(t.pointer()).dereference())
            except (gdb.error, gdb.MemoryError):
                text = None
        out.append((name, quoted(text) if text is not None else "<unprintable>"))
    return out


# --- threads and registers --------------------------------------------------------------------

def thread_on_stack(fiber):
    """The gdb thread whose stack pointer is in fiber's stack, or None."""
    selected = gdb.selected_thread()
    frame = gdb.selected_frame() if selected is not None else None
    found = None
    try:
        for t in gdb.selected_inferior().threads():
            t.switch()
            sp = int(gdb.newest_frame().read_register("rsp"))
            if fiber.bottom <= sp < fiber.top:
                found = t
                break
    finally:
        if selected is not None:
            selected.switch()
            if frame is not None:
                frame.select()
    return found


def saved_fcontext(fiber):
    """The saved stack pointer of a parked fiber: boost::fibers::context::c_.fctx_.

    Debian's Boost has no debug information, and weft's has no definition of
    boost::fibers::context (its key function is in libboost_fiber): then c_ is found as the word
    after properties_, which points to the fiber's record (Boost 1.81 declares c_ right after
    properties_, both one pointer wide)."""
    ctx = fiber.record["ctx_"]
    try:
        return int(ctx["c_"]["fctx_"])
    except gdb.error:
        pass
    record = int(fiber.record.cast(lookup_type("boost::fibers::fiber_properties").pointer()))
    base = int(ctx)
    for at in range(base, base + 1024, 8):
        if u64(at) == record:
            return u64(at + 8)
    raise WeftError(f"weft: fiber {fiber.id}: its Boost.Fiber context does not point back to "
                    "its record (not Boost 1.81's layout?)")


def saved_registers(fiber):
    """{register: value} of a parked fiber, from its saved fcontext."""
    fctx = saved_fcontext(fiber)
    if fctx == 0:
        raise WeftError(f"weft: fiber {fiber.id} has no saved context (it is running)")
    if not fiber.bottom <= fctx < fiber.top:
        raise WeftError(f"weft: fiber {fiber.id}'s saved stack pointer {fctx:#x} is not in its "
                        f"stack [{fiber.bottom:#x}, {fiber.top:#x})")
    regs = {name: u64(fctx + offset) for name, offset in SAVED}
    regs["rsp"] = fctx + FRAME_BYTES
    return fctx, regs


class FrameId:
    """A frame's identity for an unwinder (gdb 13 has no gdb.unwinder.FrameId)."""

    def __init__(self, sp, pc):
        self.sp = sp
        self.pc = pc


class FiberUnwinder(gdb.unwinder.Unwinder):
    """While armed: the selected thread's innermost frame is called by a parked fiber's frame."""

    def __init__(self):
        super().__init__("weft-fiber")
        self.armed = None  # (saved stack pointer, {register: value}, frame level)

    def __call__(self, pending):
        if self.armed is None or pending.level() != self.armed[2]:
            return None
        fctx, regs, _ = self.armed
        pc = pending.read_register("rip")
        # The frame's stack address is the fiber's, below its caller's: gdb accepts the
        # caller as outer (a frame id on the thread's own stack could look inner to it).
        sp = gdb.Value(fctx).cast(pending.read_register("rsp").type)
        info = pending.create_unwind_info(FrameId(sp, pc))
        for name, value in regs.items():
            info.add_saved_register(name, gdb.Value(value).cast(pending.read_register(name).type))
        return info


_unwinder = FiberUnwinder()
gdb.unwinder.register_unwinder(None, _unwinder, replace=True)


def backtrace_by_registers(regs, bt_args):
    """bt of the fiber, its registers written into the selected thread, then put back."""
    gdb.newest_frame().select()
    frame0 = gdb.newest_frame()
    own = {name: int(frame0.read_register(name)) for name in regs}
    # rip first: on a core file that write fails and nothing has changed.
    order = ["rip"] + [n for n in regs if n != "rip"]
    written = []
    try:
        for name in order:
            gdb.execute("set $%s = %d" % (name, regs[name]), to_string=True)
            written.append(name)
        return gdb.execute("bt " + bt_args, to_string=True)
    finally:
        for name in written:
            gdb.execute("set $%s = %d" % (name, own[name]), to_string=True)


def backtrace_by_unwinder(fctx, regs, bt_args):
    """bt of the fiber through FiberUnwinder, with the thread's own frames left out."""
    # The innermost real frame (gdb's inline-frame unwinder comes before Python unwinders:
    # functions inlined into it are frames of their own, with lower levels).
    level, frame = 0, gdb.newest_frame()
    while frame.type() == gdb.INLINE_FRAME and frame.older() is not None:
        level, frame = level + 1, frame.older()
    _unwinder.armed = (fctx, regs, level)
    gdb.invalidate_cached_frames()
    try:
        text = gdb.execute("bt " + bt_args, to_string=True)
    finally:
        _unwinder.armed = None
        gdb.invalidate_cached_frames()
    out, at = [], -1
    for line in text.splitlines(keepends=True):
        m = re.match(r"#(\d+)(\s+)", line)
        if m:
            at = int(m.group(1))
            if at > level:
                line = "#%-*d" % (len(m.group(1)) + len(m.group(2)), at - level - 1) + line[m.end():]
        if at > level:
            out.append(line)
    return "".join(out)


# --- commands ---------------------------------------------------------------------------------

class CxxLanguage:
    """Names are C++ while a command runs, whatever the language of the selected frame (a
    thread stopped in libc selects C, where `weft::detail::...` does not parse)."""

    def __enter__(self):
        self.saved = gdb.parameter("language")
        gdb.execute("set language c++", to_string=True)

    def __exit__(self, *exc):
        gdb.execute("set language " + self.saved, to_string=True)


class WeftCommand(gdb.Command):
    """weft fiber commands: weft fibers, weft bt ID."""

    def __init__(self):
        super().__init__("weft", gdb.COMMAND_STACK, prefix=True)


class FibersCommand(gdb.Command):
    """List every fiber of every weft executor: id, parent, state, what it waits on, context.

Usage: weft fibers
A running fiber shows the gdb thread it runs on; a parked one's stack is `weft bt ID`."""

    def __init__(self):
        super().__init__("weft fibers", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        with CxxLanguage():
            self.list()

    def list(self):
        for name, fibers in executors():
            counts = {s: sum(f.state == s for f in fibers) for s in ("running", "ready",
                                                                     "suspended")}
            gdb.write("executor '%s': %d fibers (%d running, %d ready, %d suspended)\n" % (
                name, len(fibers), counts["running"], counts["ready"], counts["suspended"]))
            for f in fibers:
                line = "  fiber %d parent %d %s" % (f.id, f.parent, f.state)
                try:
                    if f.state == "suspended":
                        wait = describe_wait(f.record)
                        if wait:
                            line += " (%s)" % wait
                    elif f.state == "running":
                        t = thread_on_stack(f)
                        if t is not None:
                            line += " (thread %d)" % t.num
                except (gdb.error, gdb.MemoryError) as e:
                    line += " (<%s>)" % e
                try:
                    for var, text in context_values(f.record):
                        line += " %s=%s" % (var, text)
                except (gdb.error, gdb.MemoryError) as e:
                    line += " <context not read: %s>" % e
                gdb.write(line + "\n")


class BacktraceCommand(gdb.Command):
    """Backtrace of a parked (suspended or ready) weft fiber.

Usage: weft bt ID [EXECUTOR] [bt options]
ID is the fiber's id in `weft fibers`; EXECUTOR names its executor when several have a fiber ID.
In a live process the fiber's saved registers are written into the selected thread for `bt`
and put back; in a core file an unwinder shows the fiber's frames."""

    def __init__(self):
        super().__init__("weft bt", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        with CxxLanguage():
            self.backtrace(arg)

    def backtrace(self, arg):
        words = gdb.string_to_argv(arg)
        if not words or not words[0].isdigit():
            raise WeftError("usage: weft bt ID [EXECUTOR] [bt options]")
        wanted = int(words[0])
        rest = words[1:]
        found = [f for _, fibers in executors() for f in fibers if f.id == wanted]
        names = {f.executor for f in found}
        if rest and rest[0] in names:
            found = [f for f in found if f.executor == rest[0]]
            rest = rest[1:]
        if not found:
            raise WeftError(f"weft: no fiber {wanted} (see `weft fibers`)")
        if len(found) > 1:
            raise WeftError(f"weft: fiber {wanted} is in several executors (%s): name one, "
                            f"`weft bt {wanted} EXECUTOR`" % ", ".join(sorted(names)))
        fiber = found[0]
        if fiber.state == "running":
            t = thread_on_stack(fiber)
            where = " on thread %d: `thread %d` then `bt`" % (t.num, t.num) if t else ""
            raise WeftError(f"weft: fiber {wanted} is running{where}")
        if gdb.selected_thread() is None:
            raise WeftError("weft: no thread selected")
        fctx, regs = saved_registers(fiber)
        bt_args = " ".join(rest)
        gdb.write("fiber %d (%s, executor '%s'):\n" % (fiber.id, fiber.state, fiber.executor))
        try:
            text = backtrace_by_registers(regs, bt_args)
        except gdb.error:  # a core file: registers cannot be written
            text = backtrace_by_unwinder(fctx, regs, bt_args)
        gdb.write(text)


WeftCommand()
FibersCommand()
BacktraceCommand()

/* tidings._speedups: the compiled fast path of Signal.send() and Signal.send_robust().
 *
 * The pure-Python methods in tidings/_dispatch.py are the reference. This module only
 * accelerates their common case and hands every other case to them unchanged:
 *
 *   SendMethod(pure, robust) is a method descriptor replacing Signal.send (or send_robust).
 *   Called as signal.send(sender, **named), it reads the signal's immutable plan snapshot
 *   (signal._state) exactly as the pure method does. When the plan holds only sync, immediate
 *   receivers, it dereferences every getter first (the snapshot), drops the dead, then calls
 *   each receiver through vectorcall with ONE argument array (signal, sender, *named values)
 *   and ONE keyword-name tuple ("signal", "sender", *named names) shared by every receiver of
 *   the send. Any other case (dead connections to purge, bound-method sender keys, async
 *   receivers, a keyword named "signal", "sender" or "self", positional extras)
 *   is delegated to the pure method with the very same arguments, so errors and semantics
 *   are those of the reference.
 *
 *   No lock is taken: the plan is an immutable tuple replaced, never mutated, under the
 *   signal's lock by connect/disconnect. A receiver's exception propagates with its own
 *   traceback. In the robust variant an Exception (not a BaseException) is caught, handed to
 *   signal._log_failure(receiver, error) (the same logging path as the pure method) and
 *   becomes the receiver's response.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <string.h>

/* Interned names, created once at import. */
static PyObject *str_state, *str_dead, *str_signal, *str_sender, *str_self, *str_log_failure;
/* ("signal", "sender"): the keyword names of a send without named values. */
static PyObject *base_kwnames;

/* A few call sites' keyword-name tuples and their ("signal", "sender", ...) extensions, by
 * identity: a call site passes the same constant tuple on every call. */
#define KWNAMES_CACHE 16
static PyObject *cache_in[KWNAMES_CACHE];
static PyObject *cache_out[KWNAMES_CACHE];
static int cache_next;

/* How many receivers and arguments fit the on-stack arrays before the heap is used. */
#define SMALL 16

static int
is_name(PyObject *name, PyObject *interned, const char *text)
{
    return name == interned || (PyUnicode_Check(name) &&
                                PyUnicode_CompareWithASCIIString(name, text) == 0);
}

/* A new reference to ("signal", "sender", *kwnames); None when a name collides with the
 * method's parameters ("self", "sender") or the signal argument ("signal"), for which the pure
 * method raises the right TypeError; NULL with an exception set. Cached by the identity of
 * `kwnames`, so the names are checked once per call site, not once per send. */
static PyObject *
full_kwnames(PyObject *kwnames)
{
    if (kwnames == NULL) {
        Py_INCREF(base_kwnames);
        return base_kwnames;
    }
    for (int i = 0; i < KWNAMES_CACHE; i++) {
        if (cache_in[i] == kwnames) {
            Py_INCREF(cache_out[i]);
            return cache_out[i];
        }
    }
    Py_ssize_t n = PyTuple_GET_SIZE(kwnames);
    /* A call forwarding a dict (send(sender, **named)) gets a fresh tuple every time, of the
     * same interned names: those match a cached tuple item by item. */
    for (int i = 0; i < KWNAMES_CACHE; i++) {
        PyObject *cached = cache_in[i];
        if (cached != NULL && PyTuple_GET_SIZE(cached) == n &&
            memcmp(&PyTuple_GET_ITEM(cached, 0), &PyTuple_GET_ITEM(kwnames, 0),
                   n * sizeof(PyObject *)) == 0) {
            Py_INCREF(cache_out[i]);
            return cache_out[i];
        }
    }
    PyObject *full = NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i);
        if (is_name(name, str_signal, "signal") || is_name(name, str_sender, "sender") ||
            is_name(name, str_self, "self")) {
            Py_INCREF(Py_None);
            full = Py_None;
            break;
        }
    }
    if (full == NULL) {
        full = PyTuple_New(n + 2);
        if (full == NULL) {
            return NULL;
        }
        Py_INCREF(str_signal);
        PyTuple_SET_ITEM(full, 0, str_signal);
        Py_INCREF(str_sender);
        PyTuple_SET_ITEM(full, 1, str_sender);
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *name = PyTuple_GET_ITEM(kwnames, i);
            Py_INCREF(name);
            PyTuple_SET_ITEM(full, i + 2, name);
        }
    }
    int slot = cache_next;
    cache_next = (cache_next + 1) % KWNAMES_CACHE;
    PyObject *old_in = cache_in[slot], *old_out = cache_out[slot];
    Py_INCREF(kwnames);
    cache_in[slot] = kwnames;
    Py_INCREF(full);
    cache_out[slot] = full;
    /* Released last: a tuple of strings runs no Python code when freed, but stay tidy. */
    Py_XDECREF(old_in);
    Py_XDECREF(old_out);
    return full;
}

/* The receiver behind a getter (a new reference), None when it died, NULL on error. A weak
 * reference subclass that keeps weakref's own call (a watched receiver a send has reached, see
 * tidings/_refs.py) is read like a plain one; one overriding __call__ is called, so that its
 * first dereference is recorded exactly as on the pure path. */
static PyObject *
dereference(PyObject *getter)
{
    if (PyWeakref_CheckRefExact(getter) ||
        (PyWeakref_CheckRef(getter) && Py_TYPE(getter)->tp_call == _PyWeakref_RefType.tp_call)) {
#if PY_VERSION_HEX >= 0x030D0000
        PyObject *target;
        if (PyWeakref_GetRef(getter, &target) < 0) {
            return NULL;
        }
        if (target == NULL) {
            Py_RETURN_NONE;
        }
        return target;
#else
        PyObject *target = PyWeakref_GET_OBJECT(getter);
        Py_INCREF(target);
        return target;
#endif
    }
    return PyObject_CallNoArgs(getter);
}

/* The caught exception (a new reference, normalized, its traceback attached); clears it. */
static PyObject *
take_exception(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    if (traceback != NULL && value != NULL) {
        PyException_SetTraceback(value, traceback);
    }
    Py_XDECREF(type);
    Py_XDECREF(traceback);
    return value;
#endif
}

/* Hand a caught exception to signal._log_failure(receiver, error), with the exception
 * being handled as inside an except block, like the pure method. Returns 0, or -1 with the
 * logging path's own exception set. */
static int
log_failure(PyObject *signal, PyObject *receiver, PyObject *error)
{
    PyObject *saved_type, *saved_value, *saved_traceback;
    PyErr_GetExcInfo(&saved_type, &saved_value, &saved_traceback);
    Py_INCREF(error);
    Py_INCREF(Py_TYPE(error));
    PyErr_SetExcInfo((PyObject *)Py_TYPE(error), error, PyException_GetTraceback(error));
    PyObject *result = PyObject_CallMethodObjArgs(signal, str_log_failure, receiver, error, NULL);
    PyErr_SetExcInfo(saved_type, saved_value, saved_traceback);
    if (result == NULL) {
        return -1;
    }
    Py_DECREF(result);
    return 0;
}

/* Call every live receiver behind `getters` (a tuple) with the keyword arguments
 * `values` (signal, sender, *named) named by `kwnames`; return [(receiver, response), ...].
 * `values` has one free slot before it (values[-1]) for PY_VECTORCALL_ARGUMENTS_OFFSET. */
static PyObject *
call_receivers(PyObject *getters, PyObject *signal, PyObject *const *values, PyObject *kwnames,
               int robust)
{
    Py_ssize_t count = PyTuple_GET_SIZE(getters);
    PyObject *small[SMALL];
    PyObject **receivers = small;
    if (count > SMALL) {
        receivers = PyMem_Malloc(count * sizeof(PyObject *));
        if (receivers == NULL) {
            return PyErr_NoMemory();
        }
    }
    PyObject *responses = NULL;
    Py_ssize_t live = 0;
    /* The snapshot: every getter is dereferenced before any receiver runs. */
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *target = dereference(PyTuple_GET_ITEM(getters, i));
        if (target == NULL) {
            goto done;
        }
        if (target == Py_None) {
            Py_DECREF(target);
        }
        else {
            receivers[live++] = target;
        }
    }
    responses = PyList_New(live);
    if (responses == NULL) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < live; i++) {
        PyObject *receiver = receivers[i];
        PyObject *response =
            PyObject_Vectorcall(receiver, values, PY_VECTORCALL_ARGUMENTS_OFFSET, kwnames);
        if (response == NULL) {
            if (!robust || !PyErr_ExceptionMatches(PyExc_Exception)) {
                Py_CLEAR(responses);
                goto done;
            }
            response = take_exception();
            if (response == NULL || log_failure(signal, receiver, response) < 0) {
                Py_XDECREF(response);
                Py_CLEAR(responses);
                goto done;
            }
        }
        PyObject *pair = PyTuple_New(2);
        if (pair == NULL) {
            Py_DECREF(response);
            Py_CLEAR(responses);
            goto done;
        }
        Py_INCREF(receiver);
        PyTuple_SET_ITEM(pair, 0, receiver);
        PyTuple_SET_ITEM(pair, 1, response);
        PyList_SET_ITEM(responses, i, pair);
    }
done:
    for (Py_ssize_t i = 0; i < live; i++) {
        Py_DECREF(receivers[i]);
    }
    if (receivers != small) {
        PyMem_Free(receivers);
    }
    return responses;
}

/* Whether `plan` is one the C loop can run: 1 when it holds only sync, immediate receivers;
 * 0 when the pure method must run it; 2 when it belongs to another (dead) sender than
 * `sender` (checked when `sender` is not NULL); -1 on error. Two layouts are understood:
 * (sync getters, async getters, runs) and (sync getters, whether any receiver is async or
 * deferred, the sender's identity getter or None, ...). */
static int
plain_plan(PyObject *plan, PyObject *sender)
{
    if (!PyTuple_CheckExact(plan) || PyTuple_GET_SIZE(plan) < 3 ||
        !PyTuple_CheckExact(PyTuple_GET_ITEM(plan, 0))) {
        return 0;
    }
    PyObject *second = PyTuple_GET_ITEM(plan, 1);
    if (PyTuple_CheckExact(second)) {
        return PyTuple_GET_SIZE(second) == 0;
    }
    if (second != Py_False) {
        return 0;
    }
    PyObject *identity = PyTuple_GET_ITEM(plan, 2);
    if (sender == NULL || identity == Py_None) {
        return 1;
    }
    PyObject *owner = dereference(identity);
    if (owner == NULL) {
        return -1;
    }
    Py_DECREF(owner);
    return owner == sender ? 1 : 2;
}

/* Whether instances of `type` keep `_state` and `_dead` in their __dict__ alone: the generic
 * attribute lookup, a __dict__, and neither name defined on the type (a property in a subclass
 * would be). The answer for the last type asked is kept with the type's version tag. */
static PyTypeObject *plain_type;   /* the last type found to allow it, and its version */
static unsigned int plain_version;

static int
reads_dict(PyTypeObject *type)
{
    if (type == plain_type && type->tp_version_tag == plain_version && plain_version != 0) {
        return 1;
    }
    if (type->tp_getattro != PyObject_GenericGetAttr || type->tp_dictoffset == 0 ||
        _PyType_Lookup(type, str_state) != NULL || _PyType_Lookup(type, str_dead) != NULL) {
        return 0;
    }
    /* Any later change to the type (or its bases) gives it a new version tag. */
    plain_type = type;
    plain_version = type->tp_version_tag;
    return 1;
}

/* The signal's `_state` and `_dead` (new references; `*dead` is NULL when the state is None
 * or on error), NULL with an exception set. Read from the instance dict where reads_dict()
 * allows, which costs a fraction of two PyObject_GetAttr calls; else by GetAttr. */
static PyObject *
read_state(PyObject *signal, PyObject **dead)
{
    *dead = NULL;
    if (reads_dict(Py_TYPE(signal))) {
        PyObject *dict = PyObject_GenericGetDict(signal, NULL);
        if (dict == NULL) {
            return NULL;
        }
        PyObject *state = PyDict_GetItemWithError(dict, str_state);
        if (state == Py_None) {
            /* Nothing connected: the flag is not needed (the common case of a quiet signal). */
            Py_DECREF(dict);
            Py_RETURN_NONE;
        }
        PyObject *flag = state == NULL ? NULL : PyDict_GetItemWithError(dict, str_dead);
        if (flag != NULL) {
            Py_INCREF(state);
            Py_INCREF(flag);
            Py_DECREF(dict);
            *dead = flag;
            return state;
        }
        Py_DECREF(dict);
        if (PyErr_Occurred()) {
            return NULL;
        }
        /* Not set (a subclass that never ran ConnectionIndex.__init__): GetAttr raises the
         * AttributeError the pure method would. */
    }
    PyObject *state = PyObject_GetAttr(signal, str_state);
    if (state == NULL || state == Py_None) {
        return state;
    }
    *dead = PyObject_GetAttr(signal, str_dead);
    if (*dead == NULL) {
        Py_DECREF(state);
        return NULL;
    }
    return state;
}

/* The plans' key of `sender`, id(sender), as a borrowed reference: the int of the last
 * sender is kept, since a run of sends usually comes from one sender. The key depends only
 * on the address, so a new object at a dead sender's address rightly gets the same key (the
 * plan's identity check tells them apart). NULL with an exception set. */
static PyObject *last_key;
static void *last_address;

static PyObject *
sender_key(PyObject *sender)
{
    if (last_key == NULL || last_address != (void *)sender) {
        PyObject *key = PyLong_FromVoidPtr(sender);
        if (key == NULL) {
            return NULL;
        }
        Py_XSETREF(last_key, key);
        last_address = (void *)sender;
    }
    return last_key;
}

/* -- SendMethod ------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *pure;     /* the pure-Python method: the reference and the fallback */
    PyObject *dict;     /* __dict__, for functools.update_wrapper (__doc__, __wrapped__...) */
    int robust;
    vectorcallfunc vectorcall;
} SendMethod;

static PyObject *
delegate(SendMethod *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    return PyObject_Vectorcall(self->pure, args, nargsf, kwnames);
}

static PyObject *
send_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    SendMethod *self = (SendMethod *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs != 2) {
        return delegate(self, args, nargsf, kwnames);
    }
    Py_ssize_t nnamed = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    PyObject *full = full_kwnames(kwnames);
    if (full == NULL) {
        return NULL;
    }
    if (full == Py_None) {
        Py_DECREF(full);
        return delegate(self, args, nargsf, kwnames);
    }
    PyObject *signal = args[0], *sender = args[1];
    PyObject *dead;
    PyObject *state = read_state(signal, &dead);
    if (state == NULL) {
        Py_DECREF(full);
        return NULL;
    }
    if (state == Py_None) {
        Py_DECREF(state);
        Py_XDECREF(dead);
        Py_DECREF(full);
        return PyList_New(0);
    }
    PyObject *result = NULL;
    int is_dead = dead == Py_False ? 0 : PyObject_IsTrue(dead);
    Py_DECREF(dead);
    if (is_dead < 0) {
        goto done;
    }
    /* The state is (plans by sender key, plan for other senders, whether keys are methods'):
     * with dead connections to purge or bound-method keys, the pure method knows best. */
    if (is_dead || !PyTuple_CheckExact(state) || PyTuple_GET_SIZE(state) != 3 ||
        PyTuple_GET_ITEM(state, 2) != Py_False || !PyDict_CheckExact(PyTuple_GET_ITEM(state, 0))) {
        goto fallback;
    }
    PyObject *key = sender_key(sender);
    if (key == NULL) {
        goto done;
    }
    PyObject *plan = PyDict_GetItemWithError(PyTuple_GET_ITEM(state, 0), key);
    if (plan == NULL) {
        if (PyErr_Occurred()) {
            goto done;
        }
        plan = PyTuple_GET_ITEM(state, 1);
    }
    int usable = plain_plan(plan, sender);
    if (usable < 0) {
        goto done;
    }
    if (usable == 2) {
        /* The plan of a dead sender whose id() this sender reuses: the others' plan. */
        plan = PyTuple_GET_ITEM(state, 1);
        usable = plain_plan(plan, NULL);
    }
    if (usable != 1) {
        goto fallback;
    }
    PyObject *getters = PyTuple_GET_ITEM(plan, 0);
    if (PyTuple_GET_SIZE(getters) == 0) {
        result = PyList_New(0);
        goto done;
    }
    /* One argument array for every receiver: a free slot, signal, sender, named values. */
    Py_ssize_t nvalues = nnamed + 2;
    PyObject *small[SMALL + 1];
    PyObject **buffer = small;
    if (nvalues + 1 > SMALL + 1) {
        buffer = PyMem_Malloc((nvalues + 1) * sizeof(PyObject *));
        if (buffer == NULL) {
            PyErr_NoMemory();
            goto done;
        }
    }
    buffer[0] = NULL;
    /* args is (signal, sender, *named values): exactly the values, in order. The caller
     * keeps them alive for the whole call. */
    memcpy(buffer + 1, args, nvalues * sizeof(PyObject *));
    result = call_receivers(getters, signal, buffer + 1, full, self->robust);
    if (buffer != small) {
        PyMem_Free(buffer);
    }
done:
    Py_DECREF(state);
    Py_DECREF(full);
    return result;
fallback:
    Py_DECREF(state);
    Py_DECREF(full);
    return delegate(self, args, nargsf, kwnames);
}

static PyObject *
SendMethod_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"pure", "robust", NULL};
    PyObject *pure;
    int robust = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|p:SendMethod", keywords, &pure, &robust)) {
        return NULL;
    }
    if (!PyCallable_Check(pure)) {
        PyErr_Format(PyExc_TypeError, "SendMethod() needs a callable, not %R", pure);
        return NULL;
    }
    SendMethod *self = (SendMethod *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    Py_INCREF(pure);
    self->pure = pure;
    self->robust = robust;
    self->vectorcall = send_vectorcall;
    return (PyObject *)self;
}

static int
SendMethod_traverse(SendMethod *self, visitproc visit, void *arg)
{
    Py_VISIT(self->pure);
    Py_VISIT(self->dict);
    return 0;
}

static int
SendMethod_clear(SendMethod *self)
{
    Py_CLEAR(self->pure);
    Py_CLEAR(self->dict);
    return 0;
}

static void
SendMethod_dealloc(SendMethod *self)
{
    PyObject_GC_UnTrack(self);
    SendMethod_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
SendMethod_get(PyObject *self, PyObject *obj, PyObject *type)
{
    if (obj == NULL || obj == Py_None) {
        Py_INCREF(self);
        return self;
    }
    return PyMethod_New(self, obj);
}

static PyObject *
SendMethod_repr(SendMethod *self)
{
    return PyUnicode_FromFormat("<compiled %R>", self->pure);
}

static PyMemberDef SendMethod_members[] = {
    {"pure", T_OBJECT_EX, offsetof(SendMethod, pure), READONLY,
     "The pure-Python method this one accelerates and falls back to."},
    {NULL},
};

static PyGetSetDef SendMethod_getset[] = {
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict},
    {NULL},
};

static PyTypeObject SendMethodType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tidings._speedups.SendMethod",
    .tp_doc = "A compiled Signal.send or Signal.send_robust, falling back to the pure method.",
    .tp_basicsize = sizeof(SendMethod),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL |
                Py_TPFLAGS_METHOD_DESCRIPTOR,
    .tp_new = SendMethod_new,
    .tp_traverse = (traverseproc)SendMethod_traverse,
    .tp_clear = (inquiry)SendMethod_clear,
    .tp_dealloc = (destructor)SendMethod_dealloc,
    .tp_descr_get = SendMethod_get,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(SendMethod, vectorcall),
    .tp_dictoffset = offsetof(SendMethod, dict),
    .tp_repr = (reprfunc)SendMethod_repr,
    .tp_members = SendMethod_members,
    .tp_getset = SendMethod_getset,
};

/* -- InitHook ---------------------------------------------------------------------------- */

/* InitHook(inner, pre, post, before, after, skip) replaces a class's __init__ for the model
 * signals of an ORM integration: called as __init__(self, *args, **kwargs), it calls
 * inner(self, *args, **kwargs) with the very argument array it was given (no tuple or dict
 * is built, which a Python wrapper must do), and around it:
 *   - nothing else when `skip` (a name) is in self.__dict__ already (a subclass constructor's
 *     super().__init__(): the outermost hook sends);
 *   - before(self, args, kwargs) first when the signal `pre` has connections;
 *   - after(self) once inner returned, when the signal `post` has connections then.
 * An exception of inner, before or after propagates (after inner raised, `after` is not
 * called). The Python hooks decide what to send; this only saves the per-object wrapper. */

typedef struct {
    PyObject_HEAD
    PyObject *inner, *pre, *post, *before, *after, *skip;
    PyObject *dict; /* __dict__, for functools.update_wrapper */
    vectorcallfunc vectorcall;
} InitHook;

/* Whether `signal` has connections (its _state is not None): 1, 0, or -1 on error. */
static int
connected(PyObject *signal)
{
    PyObject *dead;
    PyObject *state = read_state(signal, &dead);
    if (state == NULL) {
        return -1;
    }
    Py_XDECREF(dead);
    Py_DECREF(state);
    return state != Py_None;
}

/* The keyword arguments of a vectorcall as a new dict. */
static PyObject *
kwargs_dict(PyObject *const *values, PyObject *kwnames)
{
    PyObject *kwargs = PyDict_New();
    if (kwargs == NULL || kwnames == NULL) {
        return kwargs;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); i++) {
        if (PyDict_SetItem(kwargs, PyTuple_GET_ITEM(kwnames, i), values[i]) < 0) {
            Py_DECREF(kwargs);
            return NULL;
        }
    }
    return kwargs;
}

static PyObject *
init_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    InitHook *self = (InitHook *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs < 1 || Py_TYPE(args[0])->tp_dictoffset == 0) {
        return PyObject_Vectorcall(self->inner, args, nargsf, kwnames);
    }
    PyObject *instance = args[0];
    PyObject *dict = PyObject_GenericGetDict(instance, NULL);
    if (dict == NULL) {
        return NULL;
    }
    int inside = PyDict_Contains(dict, self->skip);
    Py_DECREF(dict);
    if (inside != 0) {
        return inside < 0 ? NULL : PyObject_Vectorcall(self->inner, args, nargsf, kwnames);
    }
    int pre = connected(self->pre);
    if (pre < 0) {
        return NULL;
    }
    if (pre) {
        PyObject *positional = PyTuple_New(nargs - 1);
        if (positional == NULL) {
            return NULL;
        }
        for (Py_ssize_t i = 1; i < nargs; i++) {
            Py_INCREF(args[i]);
            PyTuple_SET_ITEM(positional, i - 1, args[i]);
        }
        PyObject *kwargs = kwargs_dict(args + nargs, kwnames);
        PyObject *done = kwargs == NULL ? NULL
                                        : PyObject_CallFunctionObjArgs(self->before, instance,
                                                                       positional, kwargs, NULL);
        Py_DECREF(positional);
        Py_XDECREF(kwargs);
        if (done == NULL) {
            return NULL;
        }
        Py_DECREF(done);
    }
    PyObject *result = PyObject_Vectorcall(self->inner, args, nargsf, kwnames);
    if (result == NULL) {
        return NULL;
    }
    int post = connected(self->post);
    if (post != 0) {
        PyObject *done = post < 0 ? NULL : PyObject_CallOneArg(self->after, instance);
        if (done == NULL) {
            Py_DECREF(result);
            return NULL;
        }
        Py_DECREF(done);
    }
    return result;
}

static PyObject *
InitHook_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"inner", "pre", "post", "before", "after", "skip", NULL};
    PyObject *inner, *pre, *post, *before, *after, *skip;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOOU:InitHook", keywords, &inner, &pre,
                                     &post, &before, &after, &skip)) {
        return NULL;
    }
    if (!PyCallable_Check(inner) || !PyCallable_Check(before) || !PyCallable_Check(after)) {
        PyErr_Format(PyExc_TypeError, "InitHook() needs callables for inner, before and after, "
                     "not %R, %R, %R", inner, before, after);
        return NULL;
    }
    InitHook *self = (InitHook *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    PyObject **slots[] = {&self->inner, &self->pre, &self->post, &self->before, &self->after,
                          &self->skip};
    PyObject *values[] = {inner, pre, post, before, after, skip};
    for (int i = 0; i < 6; i++) {
        Py_INCREF(values[i]);
        *slots[i] = values[i];
    }
    self->vectorcall = init_vectorcall;
    return (PyObject *)self;
}

static int
InitHook_traverse(InitHook *self, visitproc visit, void *arg)
{
    Py_VISIT(self->inner);
    Py_VISIT(self->pre);
    Py_VISIT(self->post);
    Py_VISIT(self->before);
    Py_VISIT(self->after);
    Py_VISIT(self->skip);
    Py_VISIT(self->dict);
    return 0;
}

static int
InitHook_clear(InitHook *self)
{
    Py_CLEAR(self->inner);
    Py_CLEAR(self->pre);
    Py_CLEAR(self->post);
    Py_CLEAR(self->before);
    Py_CLEAR(self->after);
    Py_CLEAR(self->skip);
    Py_CLEAR(self->dict);
    return 0;
}

static void
InitHook_dealloc(InitHook *self)
{
    PyObject_GC_UnTrack(self);
    InitHook_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
InitHook_repr(InitHook *self)
{
    return PyUnicode_FromFormat("<compiled init hook of %R>", self->inner);
}

static PyMemberDef InitHook_members[] = {
    {"inner", T_OBJECT_EX, offsetof(InitHook, inner), READONLY, "The wrapped __init__."},
    {NULL},
};

static PyTypeObject InitHookType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tidings._speedups.InitHook",
    .tp_doc = "A compiled __init__ wrapper calling hooks when model signals have connections.",
    .tp_basicsize = sizeof(InitHook),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL |
                Py_TPFLAGS_METHOD_DESCRIPTOR,
    .tp_new = InitHook_new,
    .tp_traverse = (traverseproc)InitHook_traverse,
    .tp_clear = (inquiry)InitHook_clear,
    .tp_dealloc = (destructor)InitHook_dealloc,
    .tp_descr_get = SendMethod_get,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(InitHook, vectorcall),
    .tp_dictoffset = offsetof(InitHook, dict),
    .tp_repr = (reprfunc)InitHook_repr,
    .tp_members = InitHook_members,
    .tp_getset = SendMethod_getset,
};

/* -- module ----------------------------------------------------------------------------- */

static PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "tidings._speedups",
    .m_doc = "The compiled fast path of Signal.send() and Signal.send_robust().",
    .m_size = -1,
};

static PyObject *
intern(const char *text)
{
    return PyUnicode_InternFromString(text);
}

PyMODINIT_FUNC
PyInit__speedups(void)
{
    if (!(str_state = intern("_state")) || !(str_dead = intern("_dead")) ||
        !(str_signal = intern("signal")) || !(str_sender = intern("sender")) ||
        !(str_self = intern("self")) ||
        !(str_log_failure = intern("_log_failure"))) {
        return NULL;
    }
    base_kwnames = PyTuple_Pack(2, str_signal, str_sender);
    if (base_kwnames == NULL || PyType_Ready(&SendMethodType) < 0 ||
        PyType_Ready(&InitHookType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&speedups_module);
    if (module == NULL) {
        return NULL;
    }
    Py_INCREF(&SendMethodType);
    if (PyModule_AddObject(module, "SendMethod", (PyObject *)&SendMethodType) < 0) {
        Py_DECREF(&SendMethodType);
        Py_DECREF(module);
        return NULL;
    }
    Py_INCREF(&InitHookType);
    if (PyModule_AddObject(module, "InitHook", (PyObject *)&InitHookType) < 0) {
        Py_DECREF(&InitHookType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}

;; The validating scan of scan-json.ts in WebAssembly: the same state machine, reading the bytes a JavaScript loop
;; read one at a time (with a bounds and type check each) straight from linear memory, and a string's bytes 16 at a
;; time. Assembled into scan-json.wasm.ts by `npm run build:wasm` (wabt); a test checks that the two agree.
;;
;; Memory, laid out by scan-json.ts for its fields (`init` gives the offsets):
;;   0         FIELDS   per field: [length i32, offset of its name i32, next field of that length or -1 i32]
;;   $heads    HEADS    per name length from 0 to 63 (63: any from 63 up), the first field of that length, or -1
;;             NAMES    the fields' names
;;   $results  RESULTS  per field: [number of the object it was last seen in i32, kind i32, value start i32, end i32]
;;   $state    STATE    [number of the last object i32, its top-level keys i32]
;;   $stack    STACK    the open containers' kinds by depth, 1 an object, 2 an array (MAX_DEPTH + 1 bytes)
;;   then      BODY     the bytes scanned, then a 0 byte (which no token and no string takes: it ends every scan at
;;                      the end of the bytes) and 16 bytes that a string's 16-byte read may reach
(module
  (memory (export "memory") 1)

  (global $fields (mut i32) (i32.const 0))
  (global $heads (mut i32) (i32.const 0))
  (global $results (mut i32) (i32.const 0))
  (global $state (mut i32) (i32.const 0))
  (global $stack (mut i32) (i32.const 0))

  (func (export "init")
    (param $fields i32) (param $heads i32) (param $results i32) (param $state i32) (param $stack i32)
    (global.set $fields (local.get $fields))
    (global.set $heads (local.get $heads))
    (global.set $results (local.get $results))
    (global.set $state (local.get $state))
    (global.set $stack (local.get $stack)))

  ;; The field whose name is the `length` bytes at `at`, or -1: the fields of that length are compared in order, so a
  ;; name given twice is reported under its first field.
  (func $fieldOf (param $at i32) (param $length i32) (result i32)
    (local $f i32) (local $entry i32) (local $name i32) (local $k i32)
    (local.set $f
      (i32.load
        (i32.add
          (global.get $heads)
          (i32.shl (select (local.get $length) (i32.const 63) (i32.lt_u (local.get $length) (i32.const 63))) (i32.const 2)))))
    (block $none
      (loop $next
        (br_if $none (i32.lt_s (local.get $f) (i32.const 0)))
        (local.set $entry (i32.mul (local.get $f) (i32.const 12)))
        (block $differs
          (br_if $differs (i32.ne (i32.load (local.get $entry)) (local.get $length)))
          (local.set $name (i32.load offset=4 (local.get $entry)))
          (local.set $k (i32.const 0))
          (block $same
            (loop $byte
              (br_if $same (i32.ge_u (local.get $k) (local.get $length)))
              (br_if $differs
                (i32.ne
                  (i32.load8_u (i32.add (local.get $name) (local.get $k)))
                  (i32.load8_u (i32.add (local.get $at) (local.get $k)))))
              (local.set $k (i32.add (local.get $k) (i32.const 1)))
              (br $byte)))
          (return (local.get $f)))
        (local.set $f (i32.load offset=8 (local.get $entry)))
        (br $next)))
    (i32.const -1))

  (func $setField (param $f i32) (param $kind i32) (param $start i32) (param $end i32)
    (local $at i32)
    (local.set $at (i32.add (global.get $results) (i32.shl (local.get $f) (i32.const 4))))
    (i32.store (local.get $at) (i32.load (global.get $state)))
    (i32.store offset=4 (local.get $at) (local.get $kind))
    (i32.store offset=8 (local.get $at) (local.get $start))
    (i32.store offset=12 (local.get $at) (local.get $end)))

  ;; Whether the `length` bytes at `at` spell __proto__ (9) or constructor (11).
  (func $forbidden (param $at i32) (param $length i32) (result i32)
    (if (i32.eq (local.get $length) (i32.const 9))
      (then
        ;; "__proto__": "__pr" "oto_" "_"
        (return
          (i32.and
            (i32.and
              (i32.eq (i32.load (local.get $at)) (i32.const 0x72705f5f))
              (i32.eq (i32.load offset=4 (local.get $at)) (i32.const 0x5f6f746f)))
            (i32.eq (i32.load8_u offset=8 (local.get $at)) (i32.const 0x5f))))))
    (if (i32.eq (local.get $length) (i32.const 11))
      (then
        ;; "constructor": "cons" "truc" "tor"
        (return
          (i32.and
            (i32.and
              (i32.eq (i32.load (local.get $at)) (i32.const 0x736e6f63))
              (i32.eq (i32.load offset=4 (local.get $at)) (i32.const 0x63757274)))
            (i32.and
              (i32.eq (i32.load16_u offset=8 (local.get $at)) (i32.const 0x6f74))
              (i32.eq (i32.load8_u offset=10 (local.get $at)) (i32.const 0x72)))))))
    (i32.const 0))

  (func $isHex (param $c i32) (result i32)
    (i32.or
      (i32.lt_u (i32.sub (local.get $c) (i32.const 0x30)) (i32.const 10))
      ;; a-f or A-F: lower-cased, 0x61 to 0x66
      (i32.lt_u (i32.sub (i32.or (local.get $c) (i32.const 0x20)) (i32.const 0x61)) (i32.const 6))))

  ;; The object at `p` (a `{`): the position just after it, or -1 when it is not an object the scan takes (see
  ;; scan-json.ts). Numbers the object (STATE), counts its top-level keys, and records the fields it has (RESULTS).
  ;; Written as one function, its helpers inlined by hand: V8 (Node 20) does not inline WebAssembly calls, and a call
  ;; per token took half the time.
  (func (export "object") (param $p i32) (result i32)
    (local $depth i32) (local $state i32) (local $field i32) (local $valueStart i32) (local $c i32) (local $kind i32)
    (local $keyStart i32) (local $keyLength i32) (local $inObject i32) (local $n i32) (local $isKey i32)
    (local $escaped i32) (local $v v128) (local $mask i32) (local $e i32) (local $result i32)
    (if (i32.ne (i32.load8_u (local.get $p)) (i32.const 0x7b)) (then (return (i32.const -1))))
    ;; Before the object number would wrap (after 2^31 objects), every field is forgotten.
    (if (i32.eq (i32.load (global.get $state)) (i32.const 0x7fffffff))
      (then
        (memory.fill (global.get $results) (i32.const 0) (i32.shl (global.get $fields) (i32.const 4)))
        (i32.store (global.get $state) (i32.const 0))))
    (i32.store (global.get $state) (i32.add (i32.load (global.get $state)) (i32.const 1)))
    (i32.store8 offset=1 (global.get $stack) (i32.const 1))
    (local.set $depth (i32.const 1))
    (local.set $p (i32.add (local.get $p) (i32.const 1)))
    (local.set $field (i32.const -1))
    ;; 0: a value is expected; 1: a value has ended; 2: a key or `}` is expected; 3: a key is expected.
    (local.set $state (i32.const 2))
    (loop $token
      ;; Spaces and tabs.
      (loop $space
        (local.set $c (i32.load8_u (local.get $p)))
        (if (i32.or (i32.eq (local.get $c) (i32.const 0x20)) (i32.eq (local.get $c) (i32.const 0x09)))
          (then
            (local.set $p (i32.add (local.get $p) (i32.const 1)))
            (br $space))))
      ;; Every token but a string is handled in this block; a string (key or value) leaves it for the code after.
      (block $string
        (if (i32.eqz (local.get $state))
          (then
            (local.set $kind (i32.const 4))
            (block $value
              (if (i32.eq (local.get $c) (i32.const 0x22))
                (then
                  (local.set $isKey (i32.const 0))
                  (br $string)))
              (if (i32.eq (local.get $c) (i32.const 0x7b))
                (then
                  (if (i32.eq (local.get $depth) (i32.const 64)) (then (return (i32.const -1))))
                  (local.set $depth (i32.add (local.get $depth) (i32.const 1)))
                  (i32.store8 (i32.add (global.get $stack) (local.get $depth)) (i32.const 1))
                  (local.set $p (i32.add (local.get $p) (i32.const 1)))
                  (local.set $state (i32.const 2))
                  (br $token)))
              (if (i32.eq (local.get $c) (i32.const 0x5b))
                (then
                  (if (i32.eq (local.get $depth) (i32.const 64)) (then (return (i32.const -1))))
                  (local.set $depth (i32.add (local.get $depth) (i32.const 1)))
                  (i32.store8 (i32.add (global.get $stack) (local.get $depth)) (i32.const 2))
                  (local.set $p (i32.add (local.get $p) (i32.const 1)))
                  (loop $space
                    (local.set $c (i32.load8_u (local.get $p)))
                    (if (i32.or (i32.eq (local.get $c) (i32.const 0x20)) (i32.eq (local.get $c) (i32.const 0x09)))
                      (then
                        (local.set $p (i32.add (local.get $p) (i32.const 1)))
                        (br $space))))
                  ;; The array's first value, with the state still 0; or its end.
                  (br_if $token (i32.ne (local.get $c) (i32.const 0x5d)))
                  (local.set $depth (i32.sub (local.get $depth) (i32.const 1)))
                  (local.set $p (i32.add (local.get $p) (i32.const 1)))
                  (br $value)))
              ;; A number: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
              (if (i32.or (i32.eq (local.get $c) (i32.const 0x2d)) (i32.lt_u (i32.sub (local.get $c) (i32.const 0x30)) (i32.const 10)))
                (then
                  (if (i32.eq (local.get $c) (i32.const 0x2d))
                    (then
                      (local.set $p (i32.add (local.get $p) (i32.const 1)))
                      (local.set $c (i32.load8_u (local.get $p)))))
                  (if (i32.eq (local.get $c) (i32.const 0x30))
                    (then
                      (local.set $p (i32.add (local.get $p) (i32.const 1)))
                      (local.set $c (i32.load8_u (local.get $p))))
                    (else
                      (if (i32.ge_u (i32.sub (local.get $c) (i32.const 0x30)) (i32.const 10)) (then (return (i32.const -1))))
                      (loop $int
                        (local.set $p (i32.add (local.get $p) (i32.const 1)))
                        (local.set $c (i32.load8_u (local.get $p)))
                        (br_if $int (i32.lt_u (i32.sub (local.get $c) (i32.const 0x30)) (i32.const 10))))))
                  (if (i32.eq (local.get $c) (i32.const 0x2e))
                    (then
                      (local.set $p (i32.add (local.get $p) (i32.const 1)))
                      (local.set $c (i32.load8_u (local.get $p)))
                      (if (i32.ge_u (i32.sub (local.get $c) (i32.const 0x30)) (i32.const 10)) (then (return (i32.const -1))))
                      (loop $fraction
                        (local.set $p (i32.add (local.get $p) (i32.const 1)))
                        (local.set $c (i32.load8_u (local.get $p)))
                        (br_if $fraction (i32.lt_u (i32.sub (local.get $c) (i32.const 0x30)) (i32.const 10))))))
                  ;; e or E
                  (if (i32.eq (i32.or (local.get $c) (i32.const 0x20)) (i32.const 0x65))
                    (then
                      (local.set $p (i32.add (local.get $p) (i32.const 1)))
                      (local.set $c (i32.load8_u (local.get $p)))
                      (if (i32.or (i32.eq (local.get $c) (i32.const 0x2b)) (i32.eq (local.get $c) (i32.const 0x2d)))
                        (then
                          (local.set $p (i32.add (local.get $p) (i32.const 1)))
                          (local.set $c (i32.load8_u (local.get $p)))))
                      (if (i32.ge_u (i32.sub (local.get $c) (i32.const 0x30)) (i32.const 10)) (then (return (i32.const -1))))
                      (loop $exponent
                        (local.set $p (i32.add (local.get $p) (i32.const 1)))
                        (br_if $exponent
                          (i32.lt_u (i32.sub (i32.load8_u (local.get $p)) (i32.const 0x30)) (i32.const 10))))))
                  (local.set $kind (i32.const 3))
                  (br $value)))
              ;; true, false, null: "true", "fals" then "e", "null" read as little-endian words.
              (if (i32.eq (i32.load (local.get $p)) (i32.const 0x65757274))
                (then
                  (local.set $p (i32.add (local.get $p) (i32.const 4)))
                  (br $value)))
              (if
                (i32.and
                  (i32.eq (i32.load (local.get $p)) (i32.const 0x736c6166))
                  (i32.eq (i32.load8_u offset=4 (local.get $p)) (i32.const 0x65)))
                (then
                  (local.set $p (i32.add (local.get $p) (i32.const 5)))
                  (br $value)))
              (if (i32.eq (i32.load (local.get $p)) (i32.const 0x6c6c756e))
                (then
                  (local.set $p (i32.add (local.get $p) (i32.const 4)))
                  (br $value)))
              (return (i32.const -1)))
            ;; A value other than a string has ended.
            (local.set $state (i32.const 1))
            (if (i32.and (i32.eq (local.get $depth) (i32.const 1)) (i32.ne (local.get $field) (i32.const -1)))
              (then (call $setField (local.get $field) (local.get $kind) (local.get $valueStart) (local.get $p))))
            (br $token)))
        (if (i32.eq (local.get $state) (i32.const 1))
          (then
            (local.set $inObject (i32.eq (i32.load8_u (i32.add (global.get $stack) (local.get $depth))) (i32.const 1)))
            (if (i32.eq (local.get $c) (i32.const 0x2c))
              (then
                (local.set $p (i32.add (local.get $p) (i32.const 1)))
                (local.set $state (select (i32.const 3) (i32.const 0) (local.get $inObject)))
                (br $token)))
            (if (i32.ne (local.get $c) (select (i32.const 0x7d) (i32.const 0x5d) (local.get $inObject)))
              (then (return (i32.const -1))))
            (local.set $p (i32.add (local.get $p) (i32.const 1)))
            (local.set $depth (i32.sub (local.get $depth) (i32.const 1)))
            (if (i32.eqz (local.get $depth))
              (then
                (i32.store offset=4 (global.get $state) (local.get $n))
                (return (local.get $p))))
            (if (i32.and (i32.eq (local.get $depth) (i32.const 1)) (i32.ne (local.get $field) (i32.const -1)))
              (then (call $setField (local.get $field) (i32.const 4) (local.get $valueStart) (local.get $p))))
            (br $token)))
        ;; A key (state 3), or a key or the end of an empty object (state 2).
        (if (i32.and (i32.eq (local.get $c) (i32.const 0x7d)) (i32.eq (local.get $state) (i32.const 2)))
          (then
            (local.set $p (i32.add (local.get $p) (i32.const 1)))
            (local.set $state (i32.const 1))
            (local.set $depth (i32.sub (local.get $depth) (i32.const 1)))
            (if (i32.eqz (local.get $depth))
              (then
                (i32.store offset=4 (global.get $state) (local.get $n))
                (return (local.get $p))))
            (if (i32.and (i32.eq (local.get $depth) (i32.const 1)) (i32.ne (local.get $field) (i32.const -1)))
              (then (call $setField (local.get $field) (i32.const 4) (local.get $valueStart) (local.get $p))))
            (br $token)))
        (if (i32.ne (local.get $c) (i32.const 0x22)) (then (return (i32.const -1))))
        (local.set $isKey (i32.const 1)))
      ;; A string, key or value, from its opening quote at `p`.
      (local.set $keyStart (i32.add (local.get $p) (i32.const 1)))
      (local.set $p (local.get $keyStart))
      (local.set $escaped (i32.const 0))
      (block $ended
        (loop $scan
          ;; 16 bytes at a time: the first that is below 0x20 (a control character, or the 0 after the bytes), a
          ;; quote or a backslash. Bytes from 0x80 up are plain (UTF-8, which the caller checks).
          (loop $plain
            (local.set $v (v128.load (local.get $p)))
            (local.set $mask
              (i8x16.bitmask
                (v128.or
                  (v128.or
                    (i8x16.lt_u (local.get $v) (v128.const i8x16 32 32 32 32 32 32 32 32 32 32 32 32 32 32 32 32))
                    (i8x16.eq (local.get $v) (v128.const i8x16 34 34 34 34 34 34 34 34 34 34 34 34 34 34 34 34)))
                  (i8x16.eq (local.get $v) (v128.const i8x16 92 92 92 92 92 92 92 92 92 92 92 92 92 92 92 92)))))
            (if (i32.eqz (local.get $mask))
              (then
                (local.set $p (i32.add (local.get $p) (i32.const 16)))
                (br $plain))))
          (local.set $p (i32.add (local.get $p) (i32.ctz (local.get $mask))))
          (local.set $c (i32.load8_u (local.get $p)))
          (if (i32.eq (local.get $c) (i32.const 0x22))
            (then
              (local.set $p (i32.add (local.get $p) (i32.const 1)))
              (br $ended)))
          ;; A control character, or the end of the bytes.
          (if (i32.ne (local.get $c) (i32.const 0x5c)) (then (return (i32.const -1))))
          (local.set $escaped (i32.const 1))
          (local.set $e (i32.load8_u offset=1 (local.get $p)))
          (if (i32.eq (local.get $e) (i32.const 0x75))
            (then
              (if
                (i32.eqz
                  (i32.and
                    (i32.and
                      (call $isHex (i32.load8_u offset=2 (local.get $p)))
                      (call $isHex (i32.load8_u offset=3 (local.get $p))))
                    (i32.and
                      (call $isHex (i32.load8_u offset=4 (local.get $p)))
                      (call $isHex (i32.load8_u offset=5 (local.get $p))))))
                (then (return (i32.const -1))))
              (local.set $p (i32.add (local.get $p) (i32.const 6)))
              (br $scan)))
          ;; " \ / b f n r t
          (if
            (i32.or
              (i32.or
                (i32.or (i32.eq (local.get $e) (i32.const 0x22)) (i32.eq (local.get $e) (i32.const 0x5c)))
                (i32.or (i32.eq (local.get $e) (i32.const 0x2f)) (i32.eq (local.get $e) (i32.const 0x62))))
              (i32.or
                (i32.or (i32.eq (local.get $e) (i32.const 0x66)) (i32.eq (local.get $e) (i32.const 0x6e)))
                (i32.or (i32.eq (local.get $e) (i32.const 0x72)) (i32.eq (local.get $e) (i32.const 0x74)))))
            (then
              (local.set $p (i32.add (local.get $p) (i32.const 2)))
              (br $scan)))
          (return (i32.const -1))))
      (if (i32.eqz (local.get $isKey))
        (then
          (local.set $state (i32.const 1))
          (if (i32.and (i32.eq (local.get $depth) (i32.const 1)) (i32.ne (local.get $field) (i32.const -1)))
            (then
              (call $setField
                (local.get $field)
                (select (i32.const 2) (i32.const 1) (local.get $escaped))
                (local.get $valueStart)
                (local.get $p))))
          (br $token)))
      ;; A key: never escaped (it could spell a forbidden key), never __proto__ or constructor.
      (if (local.get $escaped) (then (return (i32.const -1))))
      (local.set $keyLength (i32.sub (i32.sub (local.get $p) (i32.const 1)) (local.get $keyStart)))
      (if (i32.or (i32.eq (local.get $keyLength) (i32.const 9)) (i32.eq (local.get $keyLength) (i32.const 11)))
        (then
          (if (call $forbidden (local.get $keyStart) (local.get $keyLength)) (then (return (i32.const -1))))))
      (loop $space
        (local.set $c (i32.load8_u (local.get $p)))
        (if (i32.or (i32.eq (local.get $c) (i32.const 0x20)) (i32.eq (local.get $c) (i32.const 0x09)))
          (then
            (local.set $p (i32.add (local.get $p) (i32.const 1)))
            (br $space))))
      (if (i32.ne (local.get $c) (i32.const 0x3a)) (then (return (i32.const -1))))
      (local.set $p (i32.add (local.get $p) (i32.const 1)))
      (local.set $state (i32.const 0))
      (if (i32.eq (local.get $depth) (i32.const 1))
        (then
          (local.set $n (i32.add (local.get $n) (i32.const 1)))
          (local.set $field (call $fieldOf (local.get $keyStart) (local.get $keyLength)))
          ;; The value starts after the spaces that follow the colon.
          (loop $space
            (local.set $c (i32.load8_u (local.get $p)))
            (if (i32.or (i32.eq (local.get $c) (i32.const 0x20)) (i32.eq (local.get $c) (i32.const 0x09)))
              (then
                (local.set $p (i32.add (local.get $p) (i32.const 1)))
                (br $space))))
          (local.set $valueStart (local.get $p))))
      (br $token))
    (unreachable))
)

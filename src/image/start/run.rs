//! One check: the program, its interpreter and every library, searched as glibc ld.so does.

use super::*;

// ---------------------------------------------------------------------------------------------
// The check
// ---------------------------------------------------------------------------------------------

/// One object in ld.so's link map.
pub(super) struct Obj {
    /// The name ld.so gives it (`l_name`): the path it opened, or for the executable its path.
    pub(super) path: String,
    /// Its real path in the image.
    pub(super) real: String,
    /// `$ORIGIN` for it.
    pub(super) origin: String,
    /// Names it was asked for by (`l_libname`).
    pub(super) names: Vec<String>,
    pub(super) info: ElfInfo,
    /// Index of the object whose DT_NEEDED loaded it (`l_loader`).
    pub(super) loader: Option<usize>,
}

impl Obj {
    /// glibc's `_dl_name_match_p` plus the lazy `DT_SONAME` match in `_dl_map_object`.
    pub(super) fn matches(&self, name: &str) -> bool {
        self.path == name
            || self.names.iter().any(|n| n == name)
            || self.info.soname.as_deref() == Some(name)
    }

    /// Its `DT_RPATH` directories; none when it has `DT_RUNPATH` (ld.so then drops its RPATH).
    pub(super) fn rpath_dirs(&self, abi: &Abi) -> Vec<String> {
        match (&self.info.rpath, &self.info.runpath) {
            (Some(r), None) => search_list(r, &[':'], &self.origin, abi),
            _ => Vec::new(),
        }
    }
}

/// A library as ld.so found it.
pub(super) struct Found {
    pub(super) path: String,
    pub(super) real: String,
    pub(super) info: ElfInfo,
}

/// State of one library search (`open_path` over several lists).
#[derive(Default)]
pub(super) struct Search {
    pub(super) searched: Vec<String>,
    pub(super) other_class: bool,
}

pub(super) enum ListResult {
    Found(Found),
    Fatal(String, String),
    NotFound,
}

impl Search {
    pub(super) fn tried(&mut self, dir: &str) {
        if !self.searched.iter().any(|d| d == dir) {
            self.searched.push(dir.to_string());
        }
    }

    /// glibc's `open_path`: the first usable `dir/name`.
    pub(super) fn list(
        &mut self,
        view: &dyn FsView,
        dirs: &[String],
        name: &str,
        t: Target,
    ) -> ListResult {
        for dir in dirs {
            self.tried(dir);
            let path = join_dir(dir, name);
            match probe(view, &path, t) {
                Probe::Found(real, info) => return ListResult::Found(Found { path, real, info }),
                Probe::Fatal(why) => return ListResult::Fatal(path, why),
                Probe::Other => self.other_class = true,
                Probe::Absent => {}
                Probe::Abandon => return ListResult::NotFound,
            }
        }
        ListResult::NotFound
    }
}

/// One run of [`StartCheck::check`].
pub(super) struct Run<'a> {
    pub(super) view: &'a dyn FsView,
    pub(super) env: &'a [String],
    pub(super) user: Option<(u32, u32)>,
    pub(super) missing: Vec<Missing>,
    pub(super) seen: HashSet<(String, String, String)>,
    /// `/etc/ld.so.cache`, parsed per byte order on first use.
    pub(super) caches: HashMap<bool, Option<Vec<CacheEntry>>>,
}

impl Run<'_> {
    /// Whether the user may execute the regular file at `real` (the kernel's check).
    pub(super) fn can_exec(&self, real: &str) -> bool {
        let node = self.view.node(real);
        let Some(Node::File { mode }) = node else {
            return false;
        };
        match self.user {
            None | Some((0, _)) => mode & 0o111 != 0,
            Some((uid, gid)) => {
                let (fu, fg) = self.view.owner(real);
                let bit = if fu == uid {
                    0o100
                } else if fg == gid {
                    0o010
                } else {
                    0o001
                };
                mode & bit != 0
            }
        }
    }

    pub(super) fn report(
        &mut self,
        what: &str,
        needed_by: &str,
        searched: Vec<String>,
        reason: MissingReason,
    ) {
        let key = (
            what.to_string(),
            needed_by.to_string(),
            format!("{reason:?}"),
        );
        if self.seen.insert(key) {
            self.missing.push(Missing {
                what: what.to_string(),
                needed_by: needed_by.to_string(),
                searched,
                reason,
            });
        }
    }

    pub(super) fn path_var(&self) -> Vec<String> {
        path_dirs(env_var(self.env, "PATH").unwrap_or(DEFAULT_PATH))
    }

    /// The entrypoint: a bare name is looked up in PATH like the runtime's `LookPath`
    /// (the first executable regular file).
    pub(super) fn entry(&mut self, program: &str) -> Option<Started> {
        if program.contains('/') {
            return self.exec(program, "", MissingReason::NotFound, Vec::new(), 0, 0);
        }
        let dirs = self.path_var();
        if !program.is_empty() {
            for d in &dirs {
                let cand = join_dir(d, program);
                if let Ok(real) = resolve(self.view, &cand) {
                    if self.can_exec(&real) {
                        return self.exec(&cand, "", MissingReason::NotFound, dirs, 0, 0);
                    }
                }
            }
        }
        self.report(program, "", dirs, MissingReason::NotFound);
        None
    }

    /// `execve(path)`: `absent` is the reason to report if it does not exist; `scripts` is
    /// how many `#!` files led here, `execs` how many `env` hops.
    pub(super) fn exec(
        &mut self,
        path: &str,
        needed_by: &str,
        absent: MissingReason,
        searched: Vec<String>,
        scripts: usize,
        execs: usize,
    ) -> Option<Started> {
        let real = match resolve(self.view, &absolute(path)) {
            Ok(r) => r,
            Err(Lookup::Loop) => {
                self.report(path, needed_by, searched, MissingReason::Loop);
                return None;
            }
            Err(_) => {
                self.report(path, needed_by, searched, absent);
                return None;
            }
        };
        if !self.can_exec(&real) {
            self.report(path, needed_by, Vec::new(), MissingReason::NotExecutable);
            return None;
        }
        let Some(head) = self.view.read(&real, HEAD_READ) else {
            let why = MissingReason::Invalid("cannot read the file".to_string());
            self.report(path, needed_by, Vec::new(), why);
            return None;
        };
        if head.starts_with(b"#!") {
            if scripts >= MAX_SCRIPTS {
                self.report(path, needed_by, Vec::new(), MissingReason::Loop);
                return None;
            }
            return self.script(&real, &head, needed_by, scripts, execs);
        }
        self.elf(path, &real, head, needed_by)
    }

    pub(super) fn script(
        &mut self,
        real: &str,
        head: &[u8],
        needed_by: &str,
        scripts: usize,
        execs: usize,
    ) -> Option<Started> {
        let Some((interpreter, argument)) = parse_shebang(head) else {
            let why = MissingReason::Invalid("malformed #! line".to_string());
            self.report(real, needed_by, Vec::new(), why);
            return None;
        };
        let runs = self.exec(
            &interpreter,
            real,
            MissingReason::ScriptInterpreter,
            Vec::new(),
            scripts + 1,
            execs,
        );
        // `#!/usr/bin/env NAME`: env execvp()s NAME from PATH, a fresh exec.
        let mut command = None;
        let mut command_ok = true;
        let is_env = basename(&interpreter) == "env"
            || runs.as_ref().is_some_and(|r| basename(&r.program) == "env");
        if let Some(name) = argument.as_deref().filter(|_| is_env).and_then(env_command) {
            command_ok = false;
            if execs >= MAX_ENV_EXECS {
                self.report(&name, real, Vec::new(), MissingReason::Loop);
            } else {
                command = self.env_exec(&name, real, execs + 1);
                command_ok = command.is_some();
            }
        }
        let runs = runs?;
        if !command_ok {
            return None;
        }
        Some(Started {
            program: real.to_string(),
            interpreter: None,
            libraries: Vec::new(),
            kind: ProgramKind::Script {
                interpreter,
                argument,
                runs: Box::new(runs),
                command: command.map(Box::new),
            },
        })
    }

    /// glibc `execvp(name)`: a name with `/` is used as is; otherwise the first PATH entry
    /// that is an executable file (directories and files without `x` give `EACCES` and are
    /// skipped; `ELOOP` ends the search).
    pub(super) fn env_exec(&mut self, name: &str, script: &str, execs: usize) -> Option<Started> {
        if name.contains('/') {
            let absent = MissingReason::ScriptInterpreter;
            return self.exec(name, script, absent, Vec::new(), 0, execs);
        }
        let dirs = self.path_var();
        for d in &dirs {
            let cand = join_dir(d, name);
            match resolve(self.view, &cand) {
                Ok(real) if self.can_exec(&real) => {
                    let absent = MissingReason::ScriptInterpreter;
                    return self.exec(&cand, script, absent, Vec::new(), 0, execs);
                }
                Err(Lookup::Loop) => {
                    self.report(&cand, script, Vec::new(), MissingReason::Loop);
                    return None;
                }
                _ => {}
            }
        }
        self.report(name, script, dirs, MissingReason::ScriptInterpreter);
        None
    }

    pub(super) fn elf(
        &mut self,
        path: &str,
        real: &str,
        head: Vec<u8>,
        needed_by: &str,
    ) -> Option<Started> {
        let info = match read_elf(self.view, real, head) {
            Ok(i) => i,
            Err(ElfFail::NotElf) => {
                let why = "exec format error: neither ELF nor #! script".to_string();
                self.report(path, needed_by, Vec::new(), MissingReason::Invalid(why));
                return None;
            }
            Err(ElfFail::Invalid(why)) => {
                let why = MissingReason::Invalid(format!("bad ELF file: {why}"));
                self.report(path, needed_by, Vec::new(), why);
                return None;
            }
        };
        if info.e_type != elf::ET_EXEC.0 && info.e_type != elf::ET_DYN.0 {
            let why = format!(
                "exec format error: ELF type {} is not executable",
                info.e_type
            );
            self.report(path, needed_by, Vec::new(), MissingReason::Invalid(why));
            return None;
        }
        let Some(interp) = info.interp.clone() else {
            return Some(Started {
                program: real.to_string(),
                interpreter: None,
                libraries: Vec::new(),
                kind: ProgramKind::StaticElf,
            });
        };
        let abi = Abi::of(&info);
        let target = Target::of(&info);
        let before = self.missing.len();
        let interp_obj = self.interpreter(&interp, real, target);
        let libraries = self.load_libraries(real, info, interp_obj, &abi, target);
        if self.missing.len() != before {
            return None;
        }
        Some(Started {
            program: real.to_string(),
            interpreter: Some(interp),
            libraries,
            kind: ProgramKind::DynamicElf,
        })
    }

    /// Checks `PT_INTERP` as the kernel loads it; returns its link-map entry. When it cannot
    /// be used (reported), a stand-in named by its path and file name keeps ld.so's own
    /// soname (`libc.so.6` needs `ld-linux-x86-64.so.2`) from being reported a second time.
    pub(super) fn interpreter(&mut self, interp: &str, exe: &str, target: Target) -> Obj {
        let mut obj = Obj {
            path: interp.to_string(),
            real: String::new(),
            origin: dirname(&absolute(interp)),
            names: vec![interp.to_string(), basename(interp).to_string()],
            info: ElfInfo::default(),
            loader: None,
        };
        let real = match resolve(self.view, &absolute(interp)) {
            Ok(r) => r,
            Err(Lookup::Loop) => {
                self.report(interp, exe, Vec::new(), MissingReason::Loop);
                return obj;
            }
            Err(_) => {
                self.report(interp, exe, Vec::new(), MissingReason::Interpreter);
                return obj;
            }
        };
        if !self.can_exec(&real) {
            self.report(interp, exe, Vec::new(), MissingReason::NotExecutable);
            return obj;
        }
        let parsed = match self.view.read(&real, HEAD_READ) {
            Some(head) => read_elf(self.view, &real, head),
            None => Err(ElfFail::Invalid("cannot read the file".to_string())),
        };
        match parsed {
            Ok(info) if Target::of(&info) == target => {
                obj.real = real;
                obj.names.truncate(1);
                obj.info = info;
            }
            Ok(_) => {
                self.report(interp, exe, Vec::new(), MissingReason::WrongArchitecture);
            }
            Err(ElfFail::NotElf) => {
                let why = MissingReason::Invalid("the ELF interpreter is not an ELF file".into());
                self.report(interp, exe, Vec::new(), why);
            }
            Err(ElfFail::Invalid(why)) => {
                let why = MissingReason::Invalid(format!("bad ELF interpreter: {why}"));
                self.report(interp, exe, Vec::new(), why);
            }
        }
        obj
    }

    /// ld.so's `_dl_map_object_deps`: breadth first over DT_NEEDED, each object once, then
    /// the version check. Returns the libraries loaded; what is missing is reported.
    pub(super) fn load_libraries(
        &mut self,
        exe: &str,
        info: ElfInfo,
        interp: Obj,
        abi: &Abi,
        target: Target,
    ) -> Vec<(String, String)> {
        // The executable's $ORIGIN is the directory of its real path (/proc/self/exe).
        let origin = dirname(exe);
        let ld_library_path = env_var(self.env, "LD_LIBRARY_PATH")
            .filter(|v| !v.is_empty())
            .map(|v| search_list(v, &[':', ';'], &origin, abi))
            .unwrap_or_default();
        let mut objs = vec![
            Obj {
                path: exe.to_string(),
                real: exe.to_string(),
                origin,
                names: Vec::new(),
                info,
                loader: None,
            },
            interp,
        ];
        let mut libraries = Vec::new();
        let mut queue = VecDeque::from([0usize]);
        'objects: while let Some(i) = queue.pop_front() {
            let needed = objs[i].info.needed.clone();
            for name in needed {
                if objs.iter().any(|o| o.matches(&name)) {
                    continue;
                }
                let found = match self.search(&objs, &name, i, &ld_library_path, abi, target) {
                    Ok(f) => f,
                    Err(m) => {
                        self.report(&m.what, &m.needed_by, m.searched, m.reason);
                        continue;
                    }
                };
                // Same file under another name: ld.so reuses the loaded object.
                if let Some(o) = objs.iter_mut().find(|o| o.real == found.real) {
                    o.names.push(name);
                    continue;
                }
                if objs.len() >= MAX_OBJECTS {
                    self.report(
                        &name,
                        &objs[i].path,
                        Vec::new(),
                        MissingReason::TooManyObjects,
                    );
                    break 'objects;
                }
                libraries.push((name.clone(), found.path.clone()));
                objs.push(Obj {
                    origin: dirname(&absolute(&found.path)),
                    path: found.path,
                    real: found.real,
                    names: vec![name],
                    info: found.info,
                    loader: Some(i),
                });
                queue.push_back(objs.len() - 1);
            }
        }
        self.check_versions(&objs);
        libraries
    }

    /// glibc's `_dl_check_all_versions`, once everything is loaded: every non-weak version in
    /// an object's `DT_VERNEED` must be defined by the loaded object of that name. For a
    /// provider without `DT_VERDEF` ld.so only warns ("no version information available"),
    /// but binding a versioned symbol from it then fails an assertion in `check_match`
    /// (measured: exit 127), so that counts as missing too. A provider that is missing was
    /// reported already.
    pub(super) fn check_versions(&mut self, objs: &[Obj]) {
        for obj in objs {
            for (file, versions) in &obj.info.verneed {
                // An interpreter that could not be read is reported already.
                let Some(provider) = objs.iter().find(|p| p.matches(file) && !p.real.is_empty())
                else {
                    continue;
                };
                let defs = provider.info.verdef.as_deref().unwrap_or_default();
                for v in versions.iter().filter(|v| !v.weak) {
                    if !defs.iter().any(|(h, n)| *h == v.hash && *n == v.name) {
                        let searched = vec![provider.path.clone()];
                        let reason = MissingReason::Version(file.clone());
                        self.report(&v.name, &obj.path, searched, reason);
                    }
                }
            }
        }
    }

    /// ld.so's `_dl_map_object` search for `name`, needed by `objs[o]`.
    pub(super) fn search(
        &mut self,
        objs: &[Obj],
        name: &str,
        o: usize,
        ld_library_path: &[String],
        abi: &Abi,
        target: Target,
    ) -> Result<Found, Missing> {
        let view = self.view;
        let needer = &objs[o];
        let mut s = Search::default();
        let missing = |s: Search, reason| Missing {
            what: name.to_string(),
            needed_by: needer.path.clone(),
            searched: s.searched,
            reason,
        };
        let fatal = |path: String, why: String| Missing {
            what: path,
            needed_by: needer.path.clone(),
            searched: Vec::new(),
            reason: MissingReason::Invalid(why),
        };

        if name.contains('/') {
            let Some(path) = expand_dst(name, &needer.origin, abi) else {
                return Err(missing(s, MissingReason::Library));
            };
            s.tried(&absolute(&path));
            return match probe(view, &absolute(&path), target) {
                Probe::Found(real, info) => Ok(Found { path, real, info }),
                Probe::Fatal(why) => Err(fatal(path, why)),
                Probe::Other => Err(missing(s, MissingReason::WrongArchitecture)),
                Probe::Absent | Probe::Abandon => Err(missing(s, MissingReason::Library)),
            };
        }

        let mut lists: Vec<Vec<String>> = Vec::new();
        // 1. DT_RPATH up the loader chain, unless the needing object has DT_RUNPATH.
        if needer.info.runpath.is_none() {
            let mut l = Some(o);
            while let Some(i) = l {
                lists.push(objs[i].rpath_dirs(abi));
                l = objs[i].loader;
            }
        }
        // 2. LD_LIBRARY_PATH.
        lists.push(ld_library_path.to_vec());
        // 3. DT_RUNPATH of the needing object only.
        if let Some(r) = &needer.info.runpath {
            lists.push(search_list(r, &[':'], &needer.origin, abi));
        }
        for dirs in lists.iter().filter(|d| !d.is_empty()) {
            match s.list(view, dirs, name, target) {
                ListResult::Found(f) => return Ok(f),
                ListResult::Fatal(path, why) => return Err(fatal(path, why)),
                ListResult::NotFound => {}
            }
        }

        let nodeflib = needer.info.flags_1 & elf::DF_1_NODEFLIB.0 != 0;
        let system = abi.system_dirs();
        // 4. /etc/ld.so.cache.
        if let Some(entries) = self.cache(target.big_endian) {
            s.tried(LD_SO_CACHE);
            if let Some(path) = cache_lookup(entries, name, abi) {
                // With -z nodeflib, entries from the system directories do not count.
                let skip = nodeflib && system.iter().any(|d| path.starts_with(&format!("{d}/")));
                if !skip {
                    match probe(view, path, target) {
                        Probe::Found(real, info) => {
                            let path = path.to_string();
                            return Ok(Found { path, real, info });
                        }
                        Probe::Fatal(why) => return Err(fatal(path.to_string(), why)),
                        Probe::Other => s.other_class = true,
                        Probe::Absent | Probe::Abandon => {}
                    }
                }
            }
        }
        // 5. The system directories.
        if !nodeflib {
            match s.list(view, &system, name, target) {
                ListResult::Found(f) => return Ok(f),
                ListResult::Fatal(path, why) => return Err(fatal(path, why)),
                ListResult::NotFound => {}
            }
        }
        let reason = if s.other_class {
            MissingReason::WrongArchitecture
        } else {
            MissingReason::Library
        };
        Err(missing(s, reason))
    }

    /// The image's `/etc/ld.so.cache` for an ld.so of this byte order, if it has a usable one.
    pub(super) fn cache(&mut self, big_endian: bool) -> Option<&Vec<CacheEntry>> {
        let view = self.view;
        self.caches
            .entry(big_endian)
            .or_insert_with(|| {
                let real = resolve(view, LD_SO_CACHE).ok()?;
                let data = view.read(&real, MAX_CACHE_READ)?;
                parse_ld_cache(&data, big_endian)
            })
            .as_ref()
    }
}

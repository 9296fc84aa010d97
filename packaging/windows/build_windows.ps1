# Build DecodeLab for Windows x64: a portable llama-cpp-python, the PyInstaller onedir, and
# an Inno Setup installer in dist\DecodeLab-<version>-windows-x64-setup.exe.
#
#   pwsh packaging\windows\build_windows.ps1
#
# Needs: Python 3.11+ on PATH, Visual Studio 2022 Build Tools (C++), CMake, Inno Setup 6
# (iscc.exe). PyPI has llama-cpp-python only as source, so it is compiled here (about 15-25
# minutes on a 4-core runner) with llama.cpp's portable CPU build: one ggml-cpu-<variant>.dll
# per x86-64 level, the best one loaded at start (packaging\rthooks\pyi_rth_ggml_backends.py).
# Not run on Linux: written for the GitHub Actions windows runner (.github\workflows\build.yml).
$ErrorActionPreference = "Stop"
$Root = (Resolve-Path "$PSScriptRoot\..\..").Path
Set-Location $Root

$Version = (python -c "import tomllib; print(tomllib.load(open('pyproject.toml','rb'))['project']['version'])").Trim()
$Venv = "$Root\build\pkg-venv"
$Py = "$Venv\Scripts\python.exe"
$Start = Get-Date

if (-not (Test-Path $Py)) { python -m venv $Venv }
& $Py -m pip install --upgrade pip
$env:CMAKE_ARGS = "-DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON"
& $Py -m pip install --no-cache-dir --no-binary llama-cpp-python "llama-cpp-python==0.3.36"
if ($LASTEXITCODE -ne 0) { throw "llama-cpp-python build failed" }
& $Py -m pip install -e ".[package,test]"
if ($LASTEXITCODE -ne 0) { throw "pip install failed" }

$env:QT_QPA_PLATFORM = "offscreen"
& $Py packaging\make_icons.py build\icons
& $Py -m PyInstaller --noconfirm --clean --distpath dist --workpath build\pyinstaller packaging\decodelab.spec
if ($LASTEXITCODE -ne 0) { throw "PyInstaller failed" }
if (-not (Test-Path "dist\decodelab\decodelab-cli.exe")) { throw "no dist\decodelab\decodelab-cli.exe" }

@"
name: decodelab
version: $Version
llama-cpp-python: 0.3.36
llama.cpp build: portable ($env:CMAKE_ARGS)
built on: $((Get-Date).ToUniversalTime().ToString("s"))Z, Windows $([Environment]::OSVersion.Version)
"@ | Set-Content -Encoding utf8 dist\decodelab\BUILD-INFO.txt

$Iscc = (Get-Command iscc.exe -ErrorAction SilentlyContinue).Source
if (-not $Iscc) { $Iscc = "${env:ProgramFiles(x86)}\Inno Setup 6\ISCC.exe" }
& $Iscc "/DAppVersion=$Version" packaging\windows\decodelab.iss
if ($LASTEXITCODE -ne 0) { throw "Inno Setup failed" }

$Setup = Get-Item "dist\DecodeLab-$Version-windows-x64-setup.exe"
"built in {0:n0} s: {1} ({2:n0} MB)" -f ((Get-Date) - $Start).TotalSeconds, $Setup.Name, ($Setup.Length / 1MB)

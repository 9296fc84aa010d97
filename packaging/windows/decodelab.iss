; Inno Setup 6 script for DecodeLab on Windows (x64).
;
; Packs the PyInstaller onedir bundle dist\decodelab\ (made from packaging\decodelab.spec:
; decodelab.exe = the window, decodelab-cli.exe = the subcommands, _internal\ = Python, Qt,
; llama.cpp, resources) into dist\DecodeLab-<version>-windows-x64-setup.exe.
;
;   iscc /DAppVersion=0.1.0 packaging\windows\decodelab.iss
;
; packaging\windows\build_windows.ps1 does the whole build and passes the version read from
; pyproject.toml. Paths below are relative to this file. Not built or run on Linux: CI only.

#ifndef AppVersion
  #error Pass the version: iscc /DAppVersion=X.Y.Z packaging\windows\decodelab.iss
#endif
#define AppName "DecodeLab"
#define AppExe "decodelab.exe"
#define CliExe "decodelab-cli.exe"
#define Bundle "..\..\dist\decodelab"

[Setup]
; AppId identifies the product for upgrades and uninstall: never change it.
AppId={{51866FD5-EBD3-4A48-B656-43276ACB8A41}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher=DecodeLab developers
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
; per-user install by default (no admin rights needed); the dialog offers all users
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
MinVersion=10.0
OutputDir=..\..\dist
OutputBaseFilename=DecodeLab-{#AppVersion}-windows-x64-setup
SetupIconFile=..\..\build\icons\decodelab.ico
UninstallDisplayIcon={app}\{#AppExe}
UninstallDisplayName={#AppName} {#AppVersion}
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
; the Qt and llama.cpp DLLs are replaced as a whole on upgrade
CloseApplications=yes

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
; the whole bundle, as PyInstaller laid it out (no model is in it)
Source: "{#Bundle}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[InstallDelete]
; an upgrade must not keep DLLs (e.g. llama.cpp CPU variants) that the new bundle dropped
Type: filesandordirs; Name: "{app}\_internal"

[Icons]
Name: "{group}\{#AppName}"; Filename: "{app}\{#AppExe}"; Comment: "See what each decoding track buys on your GGUF model"
Name: "{group}\{#AppName} command prompt"; Filename: "{cmd}"; Parameters: "/k ""{app}\{#CliExe}"" --help"; WorkingDir: "{userdocs}"
Name: "{group}\Uninstall {#AppName}"; Filename: "{uninstallexe}"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#AppExe}"; Tasks: desktopicon

[Run]
Filename: "{app}\{#AppExe}"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent

; Models, runs, settings and logs live in %LOCALAPPDATA%\decodelab (platformdirs) and are
; left in place on uninstall, like any user data.

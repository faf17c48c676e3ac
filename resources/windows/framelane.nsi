; framelane installer (NSIS 3). Built by .github/workflows/windows.yml:
;   makensis /DSOURCE=dist /DOUTFILE=framelane-setup.exe resources\windows\framelane.nsi
; SOURCE holds framelane.exe with the Qt, FFmpeg and OpenCV DLLs windeployqt and the workflow put
; beside it. Installs per machine under Program Files, adds Start menu entries and an uninstaller.
Unicode true
!ifndef SOURCE
  !define SOURCE "dist"
!endif
!ifndef OUTFILE
  !define OUTFILE "framelane-setup.exe"
!endif

Name "framelane"
OutFile "${OUTFILE}"
InstallDir "$PROGRAMFILES64\framelane"
InstallDirRegKey HKLM "Software\framelane" "InstallDir"
RequestExecutionLevel admin

Page directory
Page instfiles
UninstPage uninstConfirm
UninstPage instfiles

Section "framelane"
  SetOutPath "$INSTDIR"
  File /r "${SOURCE}\*.*"
  WriteRegStr HKLM "Software\framelane" "InstallDir" "$INSTDIR"
  WriteUninstaller "$INSTDIR\uninstall.exe"
  CreateDirectory "$SMPROGRAMS\framelane"
  CreateShortcut "$SMPROGRAMS\framelane\framelane.lnk" "$INSTDIR\framelane.exe"
  CreateShortcut "$SMPROGRAMS\framelane\Uninstall framelane.lnk" "$INSTDIR\uninstall.exe"
  WriteRegStr HKLM "Software\Microsoft\Windows\CurrentVersion\Uninstall\framelane" "DisplayName" "framelane"
  WriteRegStr HKLM "Software\Microsoft\Windows\CurrentVersion\Uninstall\framelane" "UninstallString" "$INSTDIR\uninstall.exe"
SectionEnd

Section "Uninstall"
  RMDir /r "$SMPROGRAMS\framelane"
  RMDir /r "$INSTDIR"
  DeleteRegKey HKLM "Software\Microsoft\Windows\CurrentVersion\Uninstall\framelane"
  DeleteRegKey HKLM "Software\framelane"
SectionEnd
